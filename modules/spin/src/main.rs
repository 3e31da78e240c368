//! `spin`: burns CPU in a tight loop without host calls, to check the host can still stop it.

use std::hint::black_box;

fn main() {
    println!("spinning");
    let mut x: u64 = 1;
    // No I/O or sleeping inside the loop: only epoch interruption can take control back.
    loop {
        x = black_box(
            x.wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407),
        );
    }
}
