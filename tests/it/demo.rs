//! `rollbackd demo`, as a newcomer runs it: no cluster, no network, no
//! configuration; the whole loop told in the terminal; exit 0.

use std::time::{Duration, Instant};

use crate::support;

#[test]
fn the_demo_tells_the_whole_loop_and_exits_0_within_a_minute() {
    let started = Instant::now();
    let out = support::command(&["demo"])
        .env_remove("ROLLBACKD_CONFIG")
        .output()
        .expect("run rollbackd demo");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    eprintln!("the demo took {took:?}");
    // The story, in order.
    let beats = [
        "deploying shop/web:1.1",
        "deploying shop/web:1.2-bad",
        "evaluation FAILED (streak 1/3)",
        "exceeded its progress deadline",
        "evaluation FAILED (streak 3/3)",
        "rollback started: undoing revision 3",
        "restoring revision 2's template (shop/web:1.1)",
        "API server: deployment/web patched back to shop/web:1.1 by rollbackd",
        "rollout complete; verifying",
        "rollback finished: recovered",
        "notification (webhook): rollback_finished shop-web -> recovered",
        "incident report",
        "The bad release was rolled back and verified.",
    ];
    let mut at = 0;
    for beat in beats {
        let Some(i) = stdout[at..].find(beat) else {
            panic!("{beat:?} missing (or out of order) in:\n{stdout}");
        };
        at += i;
    }
    assert!(
        stdout.contains("notification (webhook): rollback_started shop-web"),
        "{stdout}"
    );
    // The history a kubectl undo leaves: 2 renumbered to 4, its cause back.
    let history = &stdout[stdout.find("now shows:").unwrap()..];
    assert!(
        history.contains("3         deploy 1.2      shop/web:1.2-bad"),
        "{history}"
    );
    assert!(
        history.contains("4         deploy 1.1      shop/web:1.1"),
        "{history}"
    );
    assert!(
        stdout.contains("From the first failing evaluation to the undo request:"),
        "{stdout}"
    );
    assert!(
        stderr.trim().is_empty(),
        "the daemon logged errors: {stderr}"
    );
}
