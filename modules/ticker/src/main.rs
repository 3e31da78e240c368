//! `ticker`: a long-running command that prints "tick N" every second until it is stopped.

use std::io::Write;
use std::time::Duration;

fn main() {
    let mut stdout = std::io::stdout();
    let mut n: u64 = 1;
    loop {
        // Ignore write errors: the host may have closed the stream while stopping us.
        let _ = writeln!(stdout, "tick {n}");
        // Flush each line so the host sees it as it happens, not at exit.
        let _ = stdout.flush();
        n += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
}
