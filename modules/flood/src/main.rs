//! `flood`: writes output as fast as it can, forever, to exercise the host's output rate cap.

use std::io::Write;

fn main() {
    // 64 lines of 1 KiB per write: large writes, so the guest is limited by the host, not
    // by the number of host calls.
    let line = format!("{}\n", "x".repeat(1023));
    let chunk = line.repeat(64);
    let mut stdout = std::io::stdout().lock();
    loop {
        // Errors are ignored: a capped sink must not make the guest fail.
        let _ = stdout.write_all(chunk.as_bytes());
    }
}
