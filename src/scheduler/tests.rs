//! The slot arithmetic: offsets stable, inside the interval, spread evenly.

use super::*;

#[test]
fn slot_offset_is_stable_and_inside_the_interval() {
    let interval = Duration::from_secs(30);
    let a = slot_offset("planner", interval);
    assert_eq!(a, slot_offset("planner", interval));
    assert!(a < interval);
    assert_ne!(a, slot_offset("planner-2", interval));
    assert_eq!(a.as_nanos() % SLOT_GRID.as_nanos(), 0, "on the grid");
}

#[test]
fn ten_thousand_agents_spread_evenly_over_the_interval() {
    let interval = Duration::from_secs(30);
    let mut buckets = [0u32; 30];
    for i in 0..10_000 {
        let offset = slot_offset(&format!("agent-{i:05}"), interval);
        buckets[offset.as_secs() as usize] += 1;
    }
    // 333 expected per second; a good hash keeps every second within ±25 %.
    for (second, count) in buckets.iter().enumerate() {
        assert!(
            (250..=417).contains(count),
            "second {second} got {count} of 10000 slots"
        );
    }
}

#[test]
fn first_slot_comes_within_one_interval() {
    let interval = Duration::from_millis(200);
    for name in ["a", "b", "c", "d"] {
        assert!(first_slot_wait(name, interval) < interval);
    }
}
