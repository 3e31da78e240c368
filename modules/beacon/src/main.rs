//! `beacon`: a long-running command that prints "beacon N" every 2 seconds until stopped; a
//! second long-running component (a different digest from `ticker`) for rollout tests.

use std::io::Write;
use std::time::Duration;

fn main() {
    let mut stdout = std::io::stdout();
    for n in 1u64.. {
        // The host may have closed the stream while stopping us: nothing to do about it.
        let _ = writeln!(stdout, "beacon {n}");
        let _ = stdout.flush();
        std::thread::sleep(Duration::from_secs(2));
    }
}
