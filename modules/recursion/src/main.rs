//! `recursion`: recurses without bound until the host's stack limit traps it (runtime test fixture).

/// Each call does work on the callee's result, so it cannot become a loop (no tail call,
/// no accumulator form). Only plain integers are live across the call: they stay on the
/// native wasm stack, so the host's stack limit is hit (a "call stack exhausted" trap)
/// rather than the bottom of Rust's shadow stack in linear memory, which would trap as an
/// out-of-bounds access instead.
#[inline(never)]
fn descend(depth: u64, salt: u64) -> u64 {
    // Unreachable in practice (2^64 calls away), but the compiler cannot know: a base
    // case in name only, which keeps the recursion from being an obvious infinite one.
    if depth == u64::MAX - salt {
        return salt;
    }
    let below = descend(depth + 1, salt);
    below.wrapping_mul(31) ^ depth.rotate_left(7)
}

fn main() {
    println!("recursing");
    // A runtime value the optimizer cannot see through.
    let salt = std::env::args().count() as u64;
    let result = descend(0, salt);
    println!("unreachable: {result}");
}
