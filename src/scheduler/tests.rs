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

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos()
}

#[test]
fn first_slot_is_the_next_instant_on_the_agents_phase_of_the_wall_clock() {
    let interval = Duration::from_secs(30);
    let interval_ns = interval.as_nanos();
    let now = unix_nanos();
    for i in 0..100 {
        let name = format!("agent-{i}");
        let offset = slot_offset(&name, interval).as_nanos();
        let wait = first_slot_wait(&name, interval, now);
        assert!(wait < interval, "{name}: {wait:?} skips a slot");
        assert_eq!(
            (now + wait.as_nanos()) % interval_ns,
            offset,
            "{name}: the first slot is off the agent's phase"
        );
    }
}
