//! Which live instance owns an image: rendezvous (highest random weight) hashing of the
//! image's global id over the live instance ids. Every instance computes the same answer
//! from the same membership, with no coordination; when an instance joins or leaves only
//! the images it wins or held move (about 1/n of them), the rest stay put. Replaces
//! upstream's leader-driven `ImageMap` (its "simple" policy balances image counts through
//! a leader's acquire/release messages; here the membership alone decides). Every image
//! weighs the same here; `balance` overrides the answer for images the leader moved to
//! even out replay load.
//!
//! The hash must be the same in every process and build, so it is spelled out here
//! (FNV-1a over the id, finished with splitmix64) instead of std's seeded `DefaultHasher`.

/// The owner of `global_id` among `live` (any order); `None` when nobody is live.
pub fn owner(global_id: &str, live: &[u64]) -> Option<u64> {
    live.iter()
        .copied()
        .max_by_key(|&instance| (score(global_id, instance), instance))
}

fn score(global_id: &str, instance: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in global_id.bytes().chain(instance.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    splitmix64(h)
}

/// Spreads FNV's weak high bits, so that consecutive instance ids score independently.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{i:08x}-image-global-id")).collect()
    }

    #[test]
    fn nobody_live_owns_nothing_and_one_instance_owns_everything() {
        assert_eq!(owner("g", &[]), None);
        assert!(ids(100).iter().all(|g| owner(g, &[4242]) == Some(4242)));
    }

    #[test]
    fn the_answer_does_not_depend_on_order() {
        for g in ids(50) {
            assert_eq!(owner(&g, &[1, 2, 3]), owner(&g, &[3, 1, 2]));
        }
    }

    #[test]
    fn images_spread_and_only_the_leavers_images_move() {
        let images = ids(3000);
        let live = [14101, 14102, 14103];
        let before: Vec<_> = images.iter().map(|g| owner(g, &live)).collect();
        for i in live {
            let n = before.iter().filter(|o| **o == Some(i)).count();
            assert!((800..1200).contains(&n), "instance {i} owns {n} of 3000");
        }
        let after: Vec<_> = images.iter().map(|g| owner(g, &live[..2])).collect();
        for (b, a) in before.iter().zip(&after) {
            if *b != Some(14103) {
                assert_eq!(a, b, "an image of a surviving instance moved");
            }
        }
    }
}
