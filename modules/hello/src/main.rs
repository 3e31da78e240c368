//! `hello`: a minimal wasi:cli/run command that echoes its args and GREETING env var (runtime test fixture).

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    println!("Hello from edge!");
    println!("args: {args:?}");
    match std::env::var("GREETING") {
        Ok(greeting) => println!("GREETING={greeting}"),
        Err(_) => println!("GREETING is not set"),
    }
    // One line on stderr so the host can check both streams are kept apart.
    eprintln!("hello: this line goes to stderr");
    let _ = std::io::stdout().flush();
}
