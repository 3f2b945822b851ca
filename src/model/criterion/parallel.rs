//! The host criterion's work split over the CPU's cores: its images (matching) and its matched
//! pairs (mask losses) are independent once their points are drawn, and while it runs the device
//! waits for its gradients (on lavapipe the device's threads idle on the same cores). Results are
//! those of the serial loop: each item is computed as before and they are combined in order.

use std::num::NonZeroUsize;

/// `f` over `items` on up to as many threads as the machine has cores, results in item order.
pub(super) fn map_items<I: Send, T: Send>(items: Vec<I>, f: impl Fn(I) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(items.len());
    if threads <= 1 {
        return items.into_iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let mut groups: Vec<Vec<I>> = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        groups.push(items.by_ref().take(per).collect());
    }
    let f = &f;
    std::thread::scope(|s| {
        let mut groups = groups.into_iter();
        let first = groups.next().expect("at least two items");
        let handles: Vec<_> = groups
            .map(|g| s.spawn(move || g.into_iter().map(f).collect::<Vec<T>>()))
            .collect();
        let mut out: Vec<T> = first.into_iter().map(f).collect();
        for h in handles {
            out.extend(h.join().expect("a criterion worker panicked"));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_item_order() {
        for n in [0, 1, 2, 3, 7, 64] {
            let got = map_items((0..n).collect(), |i: usize| i * i);
            assert_eq!(got, (0..n).map(|i| i * i).collect::<Vec<_>>(), "{n} items");
        }
    }
}
