fn main() {
    println!("rbd-relay: under construction");
}
