//! `hello-p1`: a WASI preview1 core module (wasm32-wasip1) to test the preview1 path: args, env, stdio, exit codes.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    println!("Hello from preview1!");
    println!("args: {args:?}");
    match std::env::var("GREETING") {
        Ok(greeting) => println!("GREETING={greeting}"),
        Err(_) => println!("GREETING is not set"),
    }
    eprintln!("hello-p1: this line goes to stderr");
    let _ = std::io::stdout().flush();
    // `hello-p1 exit N` exits with code N, to check exit codes travel through preview1.
    if args.get(1).map(String::as_str) == Some("exit") {
        let code = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(1);
        std::process::exit(code);
    }
}
