//! The one definition of a percentile, used by the simulator's measurements and by `chatmesh bench`.

/// The nearest-rank percentile `p` (0..=100) of `sorted` (ascending): the smallest sample with at least
/// `p`% of the samples at or below it. `None` when there are no samples; `p` of 0 gives the smallest.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        let xs: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&xs, 50.0), Some(50));
        assert_eq!(percentile(&xs, 99.0), Some(99));
        assert_eq!(percentile(&xs, 100.0), Some(100));
        assert_eq!(percentile(&xs, 0.0), Some(1));
        let xs: Vec<u32> = (1..=200).collect();
        assert_eq!(percentile(&xs, 50.0), Some(100));
        assert_eq!(percentile(&xs, 99.0), Some(198));
        assert_eq!(percentile(&[3], 99.0), Some(3));
        assert_eq!(percentile(&[1, 2], 50.0), Some(1));
        assert_eq!(percentile(&[1, 2, 3], 50.0), Some(2));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
    }
}
