//! `membomb`: allocates and touches memory forever, to exercise the host's memory limit.

use std::io::Write;

const CHUNK: usize = 1024 * 1024;

fn main() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    let mut stdout = std::io::stdout();
    loop {
        // Fill with a non-zero byte so every page is really written, not just reserved.
        hoard.push(vec![0xA5; CHUNK]);
        let _ = writeln!(stdout, "allocated {} MiB", hoard.len());
        let _ = stdout.flush();
    }
}
