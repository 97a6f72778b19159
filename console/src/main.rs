//! `warren-console`: placeholder while the console is built.

fn main() {
    println!("warren-console: not yet built");
}
