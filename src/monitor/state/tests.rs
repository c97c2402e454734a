//! Every status × verdict × threshold case, against a table written by hand.

use super::*;

/// Where the probe's run of results stands against the threshold that applies to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// The run (failures for a failed probe, successes otherwise) is still short of it.
    Below,
    /// The run reaches or passes it.
    Reached,
    /// The threshold does not matter here.
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Healthy,
    Degraded,
    Failed,
}

use Kind as V;
use Run::{Any, Below, Reached};
use Status::{Degraded as D, Healthy as H, Unhealthy as U, Unknown as N};

/// (from, verdict, run, to, counted in status_changes); no change when `to == from`.
const TABLE: [(Status, Kind, Run, Status, bool); 18] = [
    (N, V::Healthy, Any, H, false),
    (N, V::Degraded, Any, D, false),
    (N, V::Failed, Below, N, false),
    (N, V::Failed, Reached, U, false),
    (H, V::Healthy, Any, H, false),
    (H, V::Degraded, Any, D, true),
    (H, V::Failed, Below, H, false),
    (H, V::Failed, Reached, U, true),
    (D, V::Healthy, Any, H, true),
    (D, V::Degraded, Any, D, false),
    (D, V::Failed, Below, D, false),
    (D, V::Failed, Reached, U, true),
    (U, V::Healthy, Below, U, false),
    (U, V::Healthy, Reached, H, true),
    (U, V::Degraded, Below, U, false),
    (U, V::Degraded, Reached, D, true),
    (U, V::Failed, Below, U, false),
    (U, V::Failed, Reached, U, false),
];

fn lookup(from: Status, kind: Kind, run: Run) -> (usize, Status, bool) {
    let matches: Vec<usize> = (0..TABLE.len())
        .filter(|&i| {
            let (f, k, r, _, _) = TABLE[i];
            f == from && k == kind && (r == run || r == Any)
        })
        .collect();
    assert_eq!(
        matches.len(),
        1,
        "{from:?} {kind:?} {run:?}: rows {matches:?}"
    );
    let (_, _, _, to, counted) = TABLE[matches[0]];
    (matches[0], to, counted)
}

#[test]
fn every_status_verdict_and_threshold_gives_the_tabled_status_and_change() {
    let verdicts = [
        (Verdict::Healthy, V::Healthy),
        (Verdict::Degraded, V::Degraded),
        (Verdict::Failed(FailureReason::Timeout), V::Failed),
        (Verdict::Failed(FailureReason::Connect), V::Failed),
    ];
    let mut used = [false; TABLE.len()];
    let mut cases = 0;
    for from in Status::ALL {
        for (verdict, kind) in verdicts {
            for failure in 1..=3 {
                for success in 1..=3 {
                    // Runs around each threshold: empty, one short, at, one past.
                    for consecutive_failures in 0..=4 {
                        for consecutive_successes in 0..=4 {
                            let before = Health {
                                status: from,
                                consecutive_failures,
                                consecutive_successes,
                            };
                            let thresholds = Thresholds { failure, success };
                            let (after, change) = step(before, verdict, thresholds);
                            let run = match kind {
                                V::Failed if consecutive_failures + 1 >= failure => Reached,
                                V::Healthy | V::Degraded
                                    if consecutive_successes + 1 >= success =>
                                {
                                    Reached
                                }
                                _ => Below,
                            };
                            let case = format!("{before:?} {verdict:?} {thresholds:?}");
                            let (row, to, counted) = lookup(from, kind, run);
                            used[row] = true;
                            cases += 1;
                            assert_eq!(after.status, to, "{case}");
                            let expected = (to != from).then_some(Change {
                                from,
                                to,
                                reason: match verdict {
                                    Verdict::Failed(reason) => Some(reason),
                                    _ => None,
                                },
                                counted,
                            });
                            assert_eq!(change, expected, "{case}");
                            // The runs: a failure extends the failures and ends the successes,
                            // a success the other way round.
                            let runs = if kind == V::Failed {
                                (consecutive_failures + 1, 0)
                            } else {
                                (0, consecutive_successes + 1)
                            };
                            assert_eq!(
                                (after.consecutive_failures, after.consecutive_successes),
                                runs,
                                "{case}"
                            );
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 4 * 4 * 3 * 3 * 5 * 5);
    assert!(used.iter().all(|u| *u), "rows never reached: {used:?}");
}

#[test]
fn runs_saturate_instead_of_wrapping() {
    let thresholds = Thresholds {
        failure: 3,
        success: 3,
    };
    let long = |status| Health {
        status,
        consecutive_failures: u32::MAX,
        consecutive_successes: u32::MAX,
    };
    let (after, change) = step(long(U), Verdict::Failed(FailureReason::Dns), thresholds);
    assert_eq!(
        (after.status, after.consecutive_failures, change),
        (U, u32::MAX, None)
    );
    let (after, _) = step(long(U), Verdict::Healthy, thresholds);
    assert_eq!((after.status, after.consecutive_successes), (H, u32::MAX));
}

#[test]
fn verdict_keeps_the_failure_reason_and_drops_the_text() {
    assert_eq!(Verdict::of(&Outcome::Healthy), Verdict::Healthy);
    assert_eq!(
        Verdict::of(&Outcome::Degraded("slow".into())),
        Verdict::Degraded
    );
    let failed = Outcome::Failed {
        reason: FailureReason::Tls,
        error: "bad certificate".into(),
    };
    assert_eq!(Verdict::of(&failed), Verdict::Failed(FailureReason::Tls));
}

#[test]
fn a_pushed_failure_is_unhealthy_at_once_and_keeps_the_failure_count() {
    for from in Status::ALL {
        let health = Health {
            status: from,
            consecutive_failures: 0,
            consecutive_successes: 3,
        };
        let (next, change) = pushed(health, FailureReason::NotServing);
        assert_eq!(next.status, Status::Unhealthy, "from {from}");
        assert_eq!(next.consecutive_failures, 0, "the probes' count");
        assert_eq!(next.consecutive_successes, 0, "recovery starts over");
        let expected = (from != Status::Unhealthy).then_some(Change {
            from,
            to: Status::Unhealthy,
            reason: Some(FailureReason::NotServing),
            counted: from != Status::Unknown,
        });
        assert_eq!(change, expected, "from {from}");
    }
}
