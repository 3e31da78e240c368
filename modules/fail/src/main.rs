//! `fail`: a command that reports an error on stderr and exits with code 3 (exit-status fixture);
//! with the argument `panic` it panics instead, which the host sees as a trap.

use std::io::Write;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("panic") {
        panic!("fail: panicking on purpose");
    }
    eprintln!("fail: something went wrong on purpose");
    // exit-with-code ends the instance without running destructors, so flush first.
    let _ = std::io::stderr().flush();
    let _ = std::io::stdout().flush();
    // std::process::exit(3) would reach the host as plain "error" (status 1) under
    // wasip2, because std calls wasi:cli/exit#exit; ask for the exact code instead.
    wasip2::cli::exit::exit_with_code(3);
    // Not reached on a host that implements exit-with-code; keep a failing status anyway.
    std::process::exit(3);
}
