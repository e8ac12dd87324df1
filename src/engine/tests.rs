//! Every rule of the README's "How it decides" as a test of [`Machine::step`]: no runtime, no
//! clock, no I/O. Times are in minutes from 0 unless said otherwise.

use super::*;

const S: Millis = 1_000;
const MIN: Millis = 60 * S;

fn policy() -> Policy {
    Policy {
        failure_threshold: 3,
        arm: Arm::AfterRollout,
        arm_window: 30 * MIN,
        cooldown: 30 * MIN,
        verify_for: 2 * MIN,
        dry_run: false,
    }
}

fn machine() -> Machine {
    Machine::new("shop-web", policy())
}

fn rev(id: &str, since: Millis, origin: Origin) -> Input {
    Input::Revision(Revision {
        id: id.into(),
        since,
        origin,
        definite: false,
    })
}

fn rollout(id: &str, since: Millis) -> Input {
    rev(id, since, Origin::Rollout)
}

fn check(result: Verdict) -> CheckResult {
    CheckResult {
        kind: "prometheus".into(),
        name: "error-ratio".into(),
        result,
        value: match result {
            Verdict::Fail => Some(0.31),
            Verdict::Pass => Some(0.01),
            Verdict::Inconclusive => None,
        },
        threshold: "max 0.05".into(),
        labels: BTreeMap::new(),
        detail: String::new(),
    }
}

fn eval(at: Millis, v: Verdict) -> Input {
    Input::Evaluation(Evaluation::new(at, vec![check(v)]))
}

use Verdict::{Fail, Inconclusive as Inc, Pass};

/// The daemon stops and starts again: a fresh machine is given what the
/// old one remembered.
fn restart(m: &mut Machine, now: Millis) -> Vec<Effect> {
    let memory = m.memory();
    *m = Machine::new(m.watch.clone(), m.policy.clone());
    m.step(
        now,
        Input::Restore {
            memory: Some(Box::new(memory)),
            journal: JournalSummary::default(),
        },
    )
}
use std::collections::BTreeMap;

/// Effects as short words, for tables: `journal:armed`, `notify:escalated`,
/// `recheck`, `rollback`, `dry-rollback`, `wait`, `persist`.
fn words(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .map(|e| match e {
            Effect::Act(Action::Recheck { .. }) => "recheck".to_owned(),
            Effect::Act(Action::Undo(o)) if o.dry_run => "dry-rollback".to_owned(),
            Effect::Act(Action::Undo(_)) => "rollback".to_owned(),
            Effect::Act(Action::AwaitRollout { .. }) => "wait".to_owned(),
            Effect::Journal(r) => format!("journal:{}", r.event.as_str()),
            Effect::Notify(r) => format!("notify:{}", r.event.as_str()),
            Effect::Persist => "persist".to_owned(),
        })
        .collect()
}

/// Feeds inputs; returns every effect produced, as words.
fn drive(m: &mut Machine, steps: Vec<(Millis, Input)>) -> Vec<String> {
    steps
        .into_iter()
        .flat_map(|(now, input)| words(&m.step(now, input)))
        .collect()
}

fn has(fx: &[String], w: &str) -> bool {
    fx.iter().any(|x| x == w)
}

fn rollback_id(m: &Machine) -> String {
    match &m.phase {
        Phase::Deciding { rollback_id, .. }
        | Phase::Acting { rollback_id, .. }
        | Phase::RollingOut { rollback_id, .. }
        | Phase::Verifying { rollback_id, .. }
        | Phase::Finishing { rollback_id, .. } => rollback_id.clone(),
        Phase::Watching => panic!("no rollback in progress"),
    }
}

/// A machine armed on revision "7" (rolled out at minute 0) that reached
/// the threshold and was told to re-read the target.
fn deciding() -> Machine {
    let mut m = machine();
    drive(
        &mut m,
        vec![
            (0, rollout("7", 0)),
            (MIN, eval(MIN, Fail)),
            (2 * MIN, eval(2 * MIN, Fail)),
            (3 * MIN, eval(3 * MIN, Fail)),
        ],
    );
    assert!(matches!(m.phase, Phase::Deciding { .. }));
    m
}

fn proceed(m: &mut Machine, now: Millis) -> Vec<String> {
    let id = rollback_id(m);
    words(&m.step(
        now,
        Input::Rechecked {
            rollback_id: id,
            result: Recheck::Proceed,
        },
    ))
}

fn applied(m: &mut Machine, now: Millis, to: &str) -> Vec<String> {
    let id = rollback_id(m);
    words(&m.step(
        now,
        Input::Acted {
            rollback_id: id,
            result: ActResult::Applied {
                to: Some(to.into()),
            },
        },
    ))
}

fn rolled_out(m: &mut Machine, now: Millis) -> Vec<String> {
    let id = rollback_id(m);
    words(&m.step(
        now,
        Input::RolledOut {
            rollback_id: id,
            result: RolloutResult::Complete(None),
        },
    ))
}

/// A machine that rolled "7" back to "6" and is verifying from minute 5.
fn verifying() -> Machine {
    let mut m = deciding();
    proceed(&mut m, 3 * MIN);
    applied(&mut m, 4 * MIN, "6");
    m.step(4 * MIN, rev("8", 4 * MIN, Origin::Rollout)); // the rollback's own new revision
    rolled_out(&mut m, 5 * MIN);
    assert!(matches!(m.phase, Phase::Verifying { .. }));
    m
}

// ---- Evaluation (README: How it decides) ----------------------------

#[test]
fn an_evaluation_fails_if_any_check_fails_else_is_inconclusive_if_any_is_else_passes() {
    let cases: &[(&[Verdict], Verdict)] = &[
        (&[Pass, Pass], Pass),
        (&[Pass, Fail, Inc], Fail),
        (&[Pass, Inc], Inc),
        (&[Inc, Inc], Inc),
        (&[Fail], Fail),
        (&[], Inc),
    ];
    for (checks, expected) in cases {
        let e = Evaluation::new(0, checks.iter().map(|v| check(*v)).collect());
        assert_eq!(e.verdict, *expected, "{checks:?}");
    }
}

#[test]
fn consecutive_failing_evaluations_form_the_streak_and_a_pass_resets_it() {
    let cases: &[(&[Verdict], u32)] = &[
        (&[Fail], 1),
        (&[Fail, Fail], 2),
        (&[Fail, Pass], 0),
        (&[Fail, Pass, Fail], 1),
        (&[Fail, Fail, Pass, Fail, Fail], 2),
    ];
    for (evals, streak) in cases {
        let mut m = machine();
        m.step(0, rev("7", 0, Origin::Unknown)); // not armed: nothing acts
        for (i, v) in evals.iter().enumerate() {
            m.step(i as Millis * MIN, eval(i as Millis * MIN, *v));
        }
        assert_eq!(m.streak, *streak, "{evals:?}");
    }
}

#[test]
fn an_inconclusive_evaluation_neither_grows_nor_resets_the_streak() {
    let mut m = machine();
    m.step(0, rollout("7", 0));
    let fx = drive(
        &mut m,
        vec![
            (MIN, eval(MIN, Fail)),
            (2 * MIN, eval(2 * MIN, Inc)),
            (3 * MIN, eval(3 * MIN, Fail)),
        ],
    );
    assert_eq!(m.streak, 2);
    assert!(!has(&fx, "recheck"));
    let fx = drive(
        &mut m,
        vec![
            (4 * MIN, eval(4 * MIN, Inc)),
            (5 * MIN, eval(5 * MIN, Fail)),
        ],
    );
    assert_eq!(m.streak, 3);
    assert!(
        has(&fx, "recheck"),
        "three failing evaluations, interleaved with inconclusive ones, act"
    );
}

#[test]
fn a_flapping_target_never_reaches_the_threshold() {
    let mut m = machine();
    m.step(0, rollout("7", 0));
    let steps = (1..=21)
        .map(|i| (i * MIN, eval(i * MIN, if i % 2 == 0 { Pass } else { Fail })))
        .collect();
    let fx = drive(&mut m, steps);
    assert!(!has(&fx, "recheck"));
    assert_eq!(m.state(22 * MIN), State::Failing);
}

#[test]
fn threshold_inconclusive_evaluations_warn_once_that_the_watch_is_blind() {
    let mut m = machine();
    m.step(0, rollout("7", 0));
    let fx = drive(
        &mut m,
        (1..=10).map(|i| (i * MIN, eval(i * MIN, Inc))).collect(),
    );
    assert_eq!(
        fx.iter().filter(|w| *w == "notify:watch_blind").count(),
        1,
        "{fx:?}"
    );
    assert_eq!(m.state(11 * MIN), State::Blind);
}

#[test]
fn a_conclusive_evaluation_ends_blindness_and_a_new_blind_spell_warns_again() {
    let mut m = machine();
    m.step(0, rollout("7", 0));
    let mut steps: Vec<(Millis, Input)> = (1..=3).map(|i| (i * MIN, eval(i * MIN, Inc))).collect();
    steps.push((4 * MIN, eval(4 * MIN, Pass)));
    steps.extend((5..=7).map(|i| (i * MIN, eval(i * MIN, Inc))));
    let fx = drive(&mut m, steps);
    assert_eq!(fx.iter().filter(|w| *w == "notify:watch_blind").count(), 2);
}

// ---- Arming --------------------------------------------------------

#[test]
fn a_new_rollout_arms_the_watch_for_arm_window() {
    let mut m = machine();
    let fx = words(&m.step(0, rollout("7", 0)));
    assert_eq!(fx, ["journal:armed", "persist"]);
    assert_eq!(m.armed_until, Some(30 * MIN));
    assert!(m.armed(30 * MIN - 1));
    assert!(!m.armed(30 * MIN));
}

#[test]
fn rolls_back_after_three_consecutive_failures_while_armed() {
    let mut m = machine();
    let fx = drive(
        &mut m,
        vec![
            (0, rollout("7", 0)),
            (MIN, eval(MIN, Fail)),
            (2 * MIN, eval(2 * MIN, Fail)),
        ],
    );
    assert!(!has(&fx, "recheck"), "two failures are not enough");
    let fx = words(&m.step(3 * MIN, eval(3 * MIN, Fail)));
    assert_eq!(fx, ["journal:decided", "recheck"]);
    let fx = proceed(&mut m, 3 * MIN);
    assert_eq!(
        fx,
        [
            "journal:rollback_started",
            "notify:rollback_started",
            "persist",
            "rollback"
        ]
    );
}

#[test]
fn a_baked_revision_is_reported_but_never_rolled_back() {
    let mut m = machine();
    m.step(0, rollout("7", 0));
    let steps = (31..=40).map(|i| (i * MIN, eval(i * MIN, Fail))).collect();
    let fx = drive(&mut m, steps);
    assert!(!has(&fx, "recheck"), "{fx:?}");
    assert_eq!(
        fx.iter().filter(|w| *w == "journal:not_armed").count(),
        1,
        "journaled once, not every interval"
    );
    assert_eq!(m.streak, 10, "still evaluated and reported");
    assert_eq!(m.state(41 * MIN), State::Failing);
    m.step(42 * MIN, eval(42 * MIN, Pass));
    assert_eq!(m.state(42 * MIN), State::Baked);
}

#[test]
fn a_revision_created_by_a_rollback_never_arms() {
    let mut m = machine();
    let fx = words(&m.step(0, rev("8", 0, Origin::Rollback)));
    assert_eq!(fx, ["journal:revision_observed", "persist"]);
    let fx = drive(
        &mut m,
        (1..=5).map(|i| (i * MIN, eval(i * MIN, Fail))).collect(),
    );
    assert!(!has(&fx, "recheck"));
}

#[test]
fn on_start_a_revision_younger_than_arm_window_is_armed_for_the_rest_of_it() {
    let cases = [
        // (created at, observed at, armed until)
        (0, 10 * MIN, Some(30 * MIN)),
        (0, 29 * MIN, Some(30 * MIN)),
        (0, 30 * MIN, None),
        (0, 90 * MIN, None),
    ];
    for (since, now, until) in cases {
        let mut m = machine();
        m.step(now, rollout("7", since));
        assert_eq!(m.armed_until, until, "created {since}, seen {now}");
    }
}

#[test]
fn a_revision_of_unknown_age_does_not_arm() {
    let mut m = machine();
    m.step(0, rev("v2", 0, Origin::Unknown));
    assert!(!m.armed(0));
}

#[test]
fn arm_always_removes_the_window() {
    let mut m = Machine::new(
        "w",
        Policy {
            arm: Arm::Always,
            ..policy()
        },
    );
    m.step(0, rev("7", 0, Origin::Unknown));
    let fx = drive(
        &mut m,
        (100..=102)
            .map(|i| (i * MIN, eval(i * MIN, Fail)))
            .collect(),
    );
    assert!(has(&fx, "recheck"));
}

#[test]
fn a_new_revision_resets_the_streak_and_is_evaluated_afresh() {
    let mut m = machine();
    drive(
        &mut m,
        vec![
            (0, rollout("7", 0)),
            (MIN, eval(MIN, Fail)),
            (2 * MIN, eval(2 * MIN, Fail)),
        ],
    );
    m.step(3 * MIN, rollout("8", 3 * MIN));
    assert_eq!(m.streak, 0);
    let fx = drive(
        &mut m,
        vec![
            (4 * MIN, eval(4 * MIN, Fail)),
            (5 * MIN, eval(5 * MIN, Fail)),
        ],
    );
    assert!(!has(&fx, "recheck"));
    assert_eq!(m.armed_until, Some(33 * MIN));
}

// ---- Rolling back --------------------------------------------------

#[test]
fn the_target_is_re_read_before_acting_and_a_newer_revision_wins() {
    let mut m = deciding();
    let id = rollback_id(&m);
    let newer = Revision {
        id: "8".into(),
        since: 3 * MIN,
        origin: Origin::Rollout,
        definite: false,
    };
    let fx = words(&m.step(
        3 * MIN,
        Input::Rechecked {
            rollback_id: id,
            result: Recheck::Superseded(newer),
        },
    ));
    assert!(
        !fx.iter()
            .any(|w| w == "rollback" || w == "notify:rollback_started"),
        "{fx:?}"
    );
    assert_eq!(m.phase, Phase::Watching);
    assert_eq!(m.revision.as_ref().unwrap().id, "8");
    assert_eq!(m.streak, 0, "the newer revision is evaluated afresh");
    assert!(m.armed(4 * MIN));
}

#[test]
fn a_revision_observed_while_deciding_drops_the_decision() {
    let mut m = deciding();
    let id = rollback_id(&m);
    let fx = words(&m.step(3 * MIN, rollout("8", 3 * MIN)));
    assert_eq!(fx[0], "journal:decision_dropped");
    let fx = words(&m.step(
        3 * MIN,
        Input::Rechecked {
            rollback_id: id,
            result: Recheck::Proceed,
        },
    ));
    assert!(
        fx.is_empty(),
        "a late answer for a dropped decision does nothing: {fx:?}"
    );
}

#[test]
fn a_paused_target_or_one_without_history_is_escalated_not_rolled_back() {
    for result in [Recheck::Paused, Recheck::NoPrevious] {
        let mut m = deciding();
        let id = rollback_id(&m);
        let fx = words(&m.step(
            3 * MIN,
            Input::Rechecked {
                rollback_id: id,
                result: result.clone(),
            },
        ));
        assert_eq!(
            fx,
            ["journal:escalated", "notify:escalated", "persist"],
            "{result:?}"
        );
        assert_eq!(m.state(4 * MIN), State::Escalated);
        let fx = drive(
            &mut m,
            (4..=8).map(|i| (i * MIN, eval(i * MIN, Fail))).collect(),
        );
        assert!(
            fx.is_empty(),
            "no further action until a new revision: {fx:?}"
        );
    }
}

#[test]
fn an_unreadable_target_is_retried_at_the_next_failing_evaluation() {
    let mut m = deciding();
    let id = rollback_id(&m);
    m.step(
        3 * MIN,
        Input::Rechecked {
            rollback_id: id,
            result: Recheck::Failed("timeout".into()),
        },
    );
    assert_eq!(m.phase, Phase::Watching);
    let fx = words(&m.step(4 * MIN, eval(4 * MIN, Fail)));
    assert!(has(&fx, "recheck"));
}

#[test]
fn rollback_started_is_journaled_before_the_rollback_is_ordered() {
    let mut m = deciding();
    let fx = proceed(&mut m, 3 * MIN);
    let journal = fx
        .iter()
        .position(|w| w == "journal:rollback_started")
        .unwrap();
    let order = fx.iter().position(|w| w == "rollback").unwrap();
    assert!(journal < order);
}

#[test]
fn the_order_carries_the_evidence_and_every_bad_revision_to_avoid() {
    let mut m = deciding();
    m.bad_revisions.insert("5".into());
    let id = rollback_id(&m);
    let fx = m.step(
        3 * MIN,
        Input::Rechecked {
            rollback_id: id,
            result: Recheck::Proceed,
        },
    );
    let order = fx
        .iter()
        .find_map(|e| {
            if let Effect::Act(Action::Undo(o)) = e {
                Some(o.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(order.from, "7");
    assert_eq!(order.avoid, ["5"]);
    assert!(
        order
            .reason
            .contains("error-ratio 0.31 (threshold max 0.05)"),
        "{}",
        order.reason
    );
    assert!(
        order.reason.contains("3 consecutive failing evaluations"),
        "{}",
        order.reason
    );
    let started = fx
        .iter()
        .find_map(|e| {
            if let Effect::Notify(r) = e {
                Some(r.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(started.checks.len(), 1);
    assert_eq!(started.trigger, Some(Trigger::Auto));
    assert_eq!(started.from_revision.as_deref(), Some("7"));
}

#[test]
fn a_conflict_ends_the_rollback_and_re_decides() {
    let mut m = deciding();
    proceed(&mut m, 3 * MIN);
    let id = rollback_id(&m);
    let fx = words(&m.step(
        3 * MIN,
        Input::Acted {
            rollback_id: id,
            result: ActResult::Conflict,
        },
    ));
    assert_eq!(
        fx,
        [
            "journal:rollback_finished",
            "notify:rollback_finished",
            "persist"
        ]
    );
    assert_eq!(m.last_rollback.as_ref().unwrap().outcome, Outcome::Conflict);
    assert!(!m.bad_revisions.contains("7"), "nothing was rolled back");
    assert_eq!(m.streak, 0);
}

#[test]
fn verification_recovers_when_no_streak_reaches_the_threshold_and_one_evaluation_passed() {
    let mut m = verifying();
    // A rate() window still lagging: two failures, then passes.
    let fx = drive(
        &mut m,
        vec![
            (5 * MIN + 10 * S, eval(5 * MIN + 10 * S, Fail)),
            (5 * MIN + 20 * S, eval(5 * MIN + 20 * S, Fail)),
            (5 * MIN + 30 * S, eval(5 * MIN + 30 * S, Pass)),
            (6 * MIN, eval(6 * MIN, Pass)),
        ],
    );
    assert!(
        !has(&fx, "journal:rollback_finished"),
        "not before verify_for"
    );
    let fx = words(&m.step(7 * MIN, Input::Tick));
    assert_eq!(
        fx,
        [
            "journal:rollback_finished",
            "notify:rollback_finished",
            "persist"
        ]
    );
    let last = m.last_rollback.clone().unwrap();
    assert_eq!(
        (last.outcome, last.from.as_str(), last.to.as_deref()),
        (Outcome::Recovered, "7", Some("6"))
    );
    assert_eq!(m.state(8 * MIN), State::Recovered);
}

#[test]
fn verification_fails_when_a_failing_streak_reaches_the_threshold() {
    let mut m = verifying();
    let fx = drive(
        &mut m,
        (1..=3)
            .map(|i| (5 * MIN + i * 10 * S, eval(5 * MIN + i * 10 * S, Fail)))
            .collect(),
    );
    assert_eq!(
        fx,
        [
            "journal:rollback_finished",
            "notify:rollback_finished",
            "persist",
            "journal:escalated",
            "notify:escalated",
            "persist"
        ]
    );
    assert_eq!(
        m.last_rollback.as_ref().unwrap().outcome,
        Outcome::VerifyFailed
    );
    assert_eq!(m.state(6 * MIN), State::Escalated);
}

#[test]
fn verification_without_any_passing_evaluation_is_unverified() {
    let mut m = verifying();
    drive(
        &mut m,
        vec![(6 * MIN, eval(6 * MIN, Inc)), (7 * MIN, eval(7 * MIN, Inc))],
    );
    assert_eq!(
        m.last_rollback.as_ref().unwrap().outcome,
        Outcome::Unverified
    );
    assert_eq!(m.state(8 * MIN), State::Escalated);
}

#[test]
fn a_rollout_that_does_not_complete_is_rollout_failed() {
    let mut m = deciding();
    proceed(&mut m, 3 * MIN);
    applied(&mut m, 3 * MIN, "6");
    let id = rollback_id(&m);
    let fx = words(&m.step(
        13 * MIN,
        Input::RolledOut {
            rollback_id: id,
            result: RolloutResult::Failed("ProgressDeadlineExceeded".into()),
        },
    ));
    assert!(
        has(&fx, "notify:rollback_finished") && has(&fx, "notify:escalated"),
        "{fx:?}"
    );
    assert_eq!(
        m.last_rollback.as_ref().unwrap().outcome,
        Outcome::RolloutFailed
    );
}

#[test]
fn a_failed_undo_is_an_error_and_escalates() {
    let mut m = deciding();
    proceed(&mut m, 3 * MIN);
    let id = rollback_id(&m);
    m.step(
        3 * MIN,
        Input::Acted {
            rollback_id: id,
            result: ActResult::Failed("exit status 1".into()),
        },
    );
    assert_eq!(m.last_rollback.as_ref().unwrap().outcome, Outcome::Error);
    assert_eq!(m.state(4 * MIN), State::Escalated);
}

#[test]
fn dry_run_says_would_roll_back_once_per_revision_and_changes_nothing() {
    let mut m = Machine::new(
        "w",
        Policy {
            dry_run: true,
            ..policy()
        },
    );
    drive(
        &mut m,
        vec![
            (0, rollout("7", 0)),
            (MIN, eval(MIN, Fail)),
            (2 * MIN, eval(2 * MIN, Fail)),
            (3 * MIN, eval(3 * MIN, Fail)),
        ],
    );
    let fx = proceed(&mut m, 3 * MIN);
    assert_eq!(
        fx,
        ["persist", "dry-rollback"],
        "the server-side dry run proves the patch; no rollback_started"
    );
    let fx = applied(&mut m, 3 * MIN, "6");
    assert_eq!(
        fx,
        [
            "journal:would_roll_back",
            "notify:would_roll_back",
            "persist"
        ]
    );
    assert!(m.bad_revisions.is_empty() && m.cooldown_until.is_none());
    let fx = drive(
        &mut m,
        (4..=10).map(|i| (i * MIN, eval(i * MIN, Fail))).collect(),
    );
    assert!(!has(&fx, "recheck"), "said once per revision: {fx:?}");
    m.step(11 * MIN, rollout("8", 11 * MIN));
    let fx = drive(
        &mut m,
        (12..=14).map(|i| (i * MIN, eval(i * MIN, Fail))).collect(),
    );
    assert!(has(&fx, "recheck"), "a new revision is judged afresh");
}

#[test]
fn evaluations_while_rolling_back_are_ignored() {
    let mut m = deciding();
    proceed(&mut m, 3 * MIN);
    let fx = drive(
        &mut m,
        (4..=10).map(|i| (i * MIN, eval(i * MIN, Fail))).collect(),
    );
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(m.state(10 * MIN), State::RollingBack);
}

#[test]
fn answers_for_another_rollback_are_ignored() {
    let mut m = deciding();
    proceed(&mut m, 3 * MIN);
    let fx = words(&m.step(
        3 * MIN,
        Input::Acted {
            rollback_id: "other".into(),
            result: ActResult::Applied { to: None },
        },
    ));
    assert!(fx.is_empty());
    let fx = words(&m.step(
        3 * MIN,
        Input::RolledOut {
            rollback_id: rollback_id(&m),
            result: RolloutResult::Complete(None),
        },
    ));
    assert!(
        fx.is_empty(),
        "a rollout answer before the undo was applied is stale"
    );
}

#[test]
fn the_revision_the_rollback_produces_is_the_restored_one_and_never_arms() {
    let mut m = deciding();
    proceed(&mut m, 3 * MIN);
    let id = rollback_id(&m);
    m.step(
        3 * MIN,
        Input::Acted {
            rollback_id: id,
            result: ActResult::Applied { to: None },
        },
    );
    // A command target only learns the new version from its next poll.
    m.step(4 * MIN, rev("v6", 4 * MIN, Origin::Rollout));
    assert!(!m.armed(4 * MIN));
    assert_eq!(m.revision.as_ref().unwrap().origin, Origin::Rollback);
    assert!(matches!(&m.phase, Phase::RollingOut { to: Some(t), .. } if t == "v6"));
}

// ---- Never make it worse -------------------------------------------

fn recovered() -> Machine {
    let mut m = verifying();
    drive(
        &mut m,
        vec![(6 * MIN, eval(6 * MIN, Pass)), (7 * MIN, Input::Tick)],
    );
    assert_eq!(
        m.last_rollback.as_ref().unwrap().outcome,
        Outcome::Recovered
    );
    m
}

#[test]
fn a_bad_revision_is_rolled_back_at_most_once() {
    let mut m = recovered();
    assert!(m.bad_revisions.contains("7"));
    // Someone deploys the same bad revision again, after the cooldown.
    m.step(60 * MIN, rollout("7", 60 * MIN));
    let fx = drive(
        &mut m,
        (61..=63).map(|i| (i * MIN, eval(i * MIN, Fail))).collect(),
    );
    assert!(!has(&fx, "recheck"), "{fx:?}");
    assert!(has(&fx, "notify:escalated"));
}

#[test]
fn cooldown_blocks_a_second_automatic_rollback() {
    let mut m = recovered();
    assert_eq!(m.cooldown_until, Some(4 * MIN + 30 * MIN));
    m.step(10 * MIN, rollout("9", 10 * MIN));
    assert_eq!(m.state(10 * MIN), State::Cooldown);
    let fx = drive(
        &mut m,
        (11..=13).map(|i| (i * MIN, eval(i * MIN, Fail))).collect(),
    );
    assert!(!has(&fx, "recheck"));
    assert!(has(&fx, "notify:escalated"));
    // After the cooldown a fresh bad rollout is rolled back again.
    m.step(40 * MIN, rollout("10", 40 * MIN));
    let fx = drive(
        &mut m,
        (41..=43).map(|i| (i * MIN, eval(i * MIN, Fail))).collect(),
    );
    assert!(has(&fx, "recheck"));
}

#[test]
fn an_escalated_watch_takes_no_action_until_a_new_revision_appears() {
    let mut m = verifying();
    drive(
        &mut m,
        (1..=3)
            .map(|i| (5 * MIN + i * S, eval(5 * MIN + i * S, Fail)))
            .collect(),
    );
    assert_eq!(m.state(6 * MIN), State::Escalated);
    let fx = drive(
        &mut m,
        (10..=20).map(|i| (i * MIN, eval(i * MIN, Fail))).collect(),
    );
    assert!(fx.is_empty(), "{fx:?}");
    m.step(60 * MIN, rollout("11", 60 * MIN));
    assert_eq!(m.state(60 * MIN), State::Armed);
    let fx = drive(
        &mut m,
        (61..=63).map(|i| (i * MIN, eval(i * MIN, Fail))).collect(),
    );
    assert!(has(&fx, "recheck"));
}

#[test]
fn a_rollback_in_progress_is_never_started_twice() {
    let mut m = deciding();
    let again = words(&m.step(4 * MIN, eval(4 * MIN, Fail)));
    assert!(!has(&again, "recheck"), "still deciding: {again:?}");
    proceed(&mut m, 4 * MIN);
    let id = rollback_id(&m);
    let twice = words(&m.step(
        4 * MIN,
        Input::Rechecked {
            rollback_id: id,
            result: Recheck::Proceed,
        },
    ));
    assert!(
        twice.is_empty(),
        "a repeated answer does not order a second undo: {twice:?}"
    );
}

#[test]
fn the_remembered_state_survives_a_restart_and_resumes_the_rollback() {
    let mut m = deciding();
    proceed(&mut m, 3 * MIN);
    applied(&mut m, 4 * MIN, "6");
    let saved = serde_json::to_string(&m.memory()).unwrap();
    let memory: Memory = serde_json::from_str(&saved).unwrap();
    let mut restored = machine();
    restored.step(
        5 * MIN,
        Input::Restore {
            memory: Some(Box::new(memory)),
            journal: JournalSummary::default(),
        },
    );
    assert_eq!(restored.phase, m.phase);
    assert_eq!(restored.bad_revisions, m.bad_revisions);
    assert_eq!(restored.armed_until, m.armed_until);
    assert_eq!(restored.streak, 0, "counters are not saved");
    let fx = rolled_out(&mut restored, 5 * MIN);
    assert_eq!(fx, ["journal:verifying", "persist"]);
    drive(
        &mut restored,
        vec![(6 * MIN, eval(6 * MIN, Pass)), (8 * MIN, Input::Tick)],
    );
    assert_eq!(restored.last_rollback.unwrap().outcome, Outcome::Recovered);
}

#[test]
fn a_paused_watch_never_rolls_back_and_resumes_when_told() {
    let mut m = machine();
    m.step(0, rollout("7", 0));
    assert_eq!(
        words(&m.step(0, Input::Pause)),
        ["journal:paused", "persist"]
    );
    let fx = drive(
        &mut m,
        (1..=5).map(|i| (i * MIN, eval(i * MIN, Fail))).collect(),
    );
    assert!(!has(&fx, "recheck"));
    assert_eq!(m.state(5 * MIN), State::Paused);
    m.step(6 * MIN, Input::Resume);
    let fx = words(&m.step(7 * MIN, eval(7 * MIN, Fail)));
    assert!(has(&fx, "recheck"), "the streak kept counting while paused");
}

#[test]
fn reset_clears_an_escalation_and_the_streak() {
    let mut m = deciding();
    let id = rollback_id(&m);
    m.step(
        3 * MIN,
        Input::Rechecked {
            rollback_id: id,
            result: Recheck::NoPrevious,
        },
    );
    assert_eq!(m.state(4 * MIN), State::Escalated);
    m.step(4 * MIN, Input::Reset);
    assert_eq!(m.state(4 * MIN), State::Armed);
    assert_eq!(m.streak, 0);
}

#[test]
fn the_state_names_what_the_watch_is_doing() {
    assert_eq!(machine().state(0), State::Idle);
    let mut m = machine();
    m.step(0, rollout("7", 0));
    assert_eq!(m.state(MIN), State::Armed);
    assert_eq!(m.state(31 * MIN), State::Baked);
    m.step(MIN, eval(MIN, Fail));
    assert_eq!(m.state(MIN), State::Failing);
    assert_eq!(deciding().state(3 * MIN), State::RollingBack);
    assert_eq!(verifying().state(5 * MIN), State::Verifying);
}

#[test]
fn a_restart_resumes_a_rollback_in_progress_without_a_second_undo() {
    // Killed while the undo was being applied: it is not ordered again.
    let mut m = deciding();
    proceed(&mut m, 3 * MIN);
    let fx = words(&restart(&mut m, 10 * MIN));
    assert_eq!(fx, ["journal:rollback_resumed", "wait", "persist"]);
    assert!(!fx.iter().any(|w| w == "rollback" || w == "recheck"));
    assert!(m.bad_revisions.contains("7"));

    // Killed while waiting for the rollout: waits again.
    let fx = words(&restart(&mut m, 11 * MIN));
    assert_eq!(fx, ["journal:rollback_resumed", "wait"]);

    // Killed while verifying: verifies afresh from the restart.
    let mut v = verifying();
    v.step(5 * MIN + 30 * S, eval(5 * MIN + 30 * S, Pass));
    restart(&mut v, 20 * MIN);
    assert!(matches!(v.phase, Phase::Verifying { since, passed: false, .. } if since == 20 * MIN));
    v.step(21 * MIN, Input::Tick);
    assert!(
        matches!(v.phase, Phase::Verifying { .. }),
        "the window starts again"
    );
    drive(
        &mut v,
        vec![(21 * MIN, eval(21 * MIN, Pass)), (22 * MIN, Input::Tick)],
    );
    assert_eq!(v.last_rollback.unwrap().outcome, Outcome::Recovered);
}

#[test]
fn a_rollback_escalated_before_the_target_was_read_stays_escalated_for_its_revision() {
    // Restarted mid-undo; the undo ends as rollout_failed before the adapter
    // first reports the revision, so the escalation names none.
    let mut m = deciding();
    proceed(&mut m, 3 * MIN);
    m.revision = None;
    restart(&mut m, 10 * MIN);
    let id = rollback_id(&m);
    let fx = words(&m.step(
        10 * MIN,
        Input::RolledOut {
            rollback_id: id,
            result: RolloutResult::Failed("the undo was never applied".into()),
        },
    ));
    assert!(has(&fx, "notify:escalated"), "{fx:?}");
    // Then "7", the revision it was rolling away from, is first read, and
    // keeps failing: one escalation, not a second one.
    let fx = drive(
        &mut m,
        vec![
            (10 * MIN, rollout("7", 0)),
            (11 * MIN, eval(11 * MIN, Fail)),
            (12 * MIN, eval(12 * MIN, Fail)),
            (13 * MIN, eval(13 * MIN, Fail)),
        ],
    );
    assert!(!has(&fx, "notify:escalated"), "{fx:?}");
    assert!(!has(&fx, "recheck"), "{fx:?}");
    assert_eq!(m.state(13 * MIN), State::Escalated);
    // A new deploy is judged afresh (within the last rollback's cooldown).
    m.step(14 * MIN, rollout("9", 14 * MIN));
    assert_eq!(m.state(14 * MIN), State::Cooldown);
}

#[test]
fn a_restart_before_the_rollback_started_drops_the_decision() {
    let mut m = deciding();
    let fx = words(&restart(&mut m, 4 * MIN));
    assert_eq!(fx, ["journal:decision_dropped", "persist"]);
    assert_eq!(m.phase, Phase::Watching);
}

// ---- Found in review: loop protection at its edges ------------------------

#[test]
fn a_target_without_a_version_is_rolled_back_once_and_then_escalated_once() {
    // A command target without `current`, under arm = "always".
    let mut m = Machine::new(
        "w",
        Policy {
            arm: Arm::Always,
            cooldown: 5 * MIN,
            ..policy()
        },
    );
    drive(
        &mut m,
        (1..=3).map(|i| (i * MIN, eval(i * MIN, Fail))).collect(),
    );
    proceed(&mut m, 3 * MIN);
    let id = rollback_id(&m);
    m.step(
        3 * MIN,
        Input::Acted {
            rollback_id: id.clone(),
            result: ActResult::Applied { to: None },
        },
    );
    m.step(
        3 * MIN,
        Input::RolledOut {
            rollback_id: id,
            result: RolloutResult::Complete(None),
        },
    );
    drive(
        &mut m,
        (4..=6).map(|i| (i * MIN, eval(i * MIN, Fail))).collect(),
    );
    assert_ne!(
        m.last_rollback.as_ref().unwrap().outcome,
        Outcome::Recovered
    );
    assert_eq!(m.state(7 * MIN), State::Escalated);
    // Long after the cooldown: no second rollback, no repeated escalation.
    let fx = drive(
        &mut m,
        (7..=60).map(|i| (i * MIN, eval(i * MIN, Fail))).collect(),
    );
    assert!(fx.is_empty(), "{fx:?}");
}

#[test]
fn with_arm_always_a_restored_revision_is_never_rolled_back() {
    let mut m = Machine::new(
        "w",
        Policy {
            arm: Arm::Always,
            cooldown: MIN,
            ..policy()
        },
    );
    m.step(0, rev("6", 0, Origin::Rollback));
    let fx = drive(
        &mut m,
        (10..=20).map(|i| (i * MIN, eval(i * MIN, Fail))).collect(),
    );
    assert!(!has(&fx, "recheck"), "{fx:?}");
}

#[test]
fn a_rollback_that_lands_on_a_known_bad_revision_is_an_error() {
    let mut m = deciding();
    m.bad_revisions.insert("5".into());
    proceed(&mut m, 3 * MIN);
    let id = rollback_id(&m);
    m.step(
        3 * MIN,
        Input::Acted {
            rollback_id: id.clone(),
            result: ActResult::Applied { to: None },
        },
    );
    let landed = Revision {
        id: "5".into(),
        since: 4 * MIN,
        origin: Origin::Rollout,
        definite: false,
    };
    let fx = words(&m.step(
        4 * MIN,
        Input::RolledOut {
            rollback_id: id,
            result: RolloutResult::Complete(Some(landed)),
        },
    ));
    assert!(
        has(&fx, "notify:rollback_finished") && has(&fx, "notify:escalated"),
        "{fx:?}"
    );
    assert_eq!(m.last_rollback.as_ref().unwrap().outcome, Outcome::Error);
    assert_eq!(m.state(5 * MIN), State::Escalated);
}

#[test]
fn evaluations_started_before_the_rollout_completed_do_not_count_in_verification() {
    let mut m = verifying(); // verifying since minute 5
    let fx = drive(
        &mut m,
        (1..=5)
            .map(|i| (5 * MIN + i * S, eval(5 * MIN - i * S, Fail)))
            .collect(),
    );
    assert!(
        fx.is_empty(),
        "stale failures are not the restored revision's: {fx:?}"
    );
    assert!(matches!(m.phase, Phase::Verifying { streak: 0, .. }));
}

#[test]
fn a_deploy_during_verification_ends_the_rollback_and_is_judged_afresh() {
    let mut m = verifying(); // the rollback landed on "8"
    let fx = words(&m.step(6 * MIN, rollout("9", 6 * MIN)));
    assert!(has(&fx, "journal:rollback_finished"), "{fx:?}");
    assert_eq!(m.last_rollback.as_ref().unwrap().outcome, Outcome::Conflict);
    assert_eq!(
        m.revision.as_ref().unwrap().origin,
        Origin::Rollout,
        "someone else's deploy"
    );
    assert!(m.armed(7 * MIN));
}

#[test]
fn a_dry_run_interrupted_by_a_restart_is_dropped_not_resumed() {
    let mut m = deciding();
    m.policy.dry_run = true;
    proceed(&mut m, 3 * MIN);
    // The policy changed to a real rollback before the answer came.
    m.policy.dry_run = false;
    let fx = words(&restart(&mut m, 4 * MIN));
    assert_eq!(fx, ["journal:decision_dropped", "persist"]);
    assert!(m.bad_revisions.is_empty() && m.cooldown_until.is_none());
}

#[test]
fn a_dry_run_answer_is_judged_as_a_dry_run_even_after_a_policy_change() {
    let mut m = deciding();
    m.policy.dry_run = true;
    proceed(&mut m, 3 * MIN);
    m.policy.dry_run = false;
    let fx = applied(&mut m, 3 * MIN, "6");
    assert_eq!(
        fx,
        [
            "journal:would_roll_back",
            "notify:would_roll_back",
            "persist"
        ]
    );
    assert!(m.bad_revisions.is_empty());
}

#[test]
fn a_failed_undo_still_marks_the_revision_bad_and_starts_the_cooldown() {
    let mut m = deciding();
    proceed(&mut m, 3 * MIN);
    let id = rollback_id(&m);
    m.step(
        3 * MIN,
        Input::Acted {
            rollback_id: id,
            result: ActResult::Failed("exit status 2".into()),
        },
    );
    assert!(m.bad_revisions.contains("7"));
    assert_eq!(m.cooldown_until, Some(33 * MIN));
    let id_refused = {
        let mut r = deciding();
        proceed(&mut r, 3 * MIN);
        let id = rollback_id(&r);
        r.step(
            3 * MIN,
            Input::Acted {
                rollback_id: id,
                result: ActResult::Refused("revision not found".into()),
            },
        );
        r
    };
    assert!(
        id_refused.bad_revisions.is_empty(),
        "a refusal changed nothing"
    );
}

#[test]
fn a_revision_the_adapter_knows_is_new_ends_an_undo_in_flight_as_a_conflict_and_arms() {
    let mut m = deciding();
    proceed(&mut m, 3 * MIN);
    let fx = words(&m.step(
        3 * MIN + S,
        Input::Revision(Revision {
            id: "9".into(),
            since: 3 * MIN + S,
            origin: Origin::Rollout,
            definite: true,
        }),
    ));
    assert!(has(&fx, "journal:rollback_finished"), "{fx:?}");
    assert!(has(&fx, "journal:armed"), "{fx:?}");
    assert_eq!(m.last_rollback.as_ref().unwrap().outcome, Outcome::Conflict);
    assert!(m.armed(3 * MIN + S));
    // The undo's late answer changes nothing.
    let id = m.last_rollback.as_ref().unwrap().rollback_id.clone();
    let late = m.step(
        3 * MIN + 2 * S,
        Input::Acted {
            rollback_id: id,
            result: ActResult::Conflict,
        },
    );
    assert!(late.is_empty(), "{late:?}");
    // A reused revision, or the one rolled away from, is not someone else's.
    let mut m = deciding();
    proceed(&mut m, 3 * MIN);
    let fx = words(&m.step(
        3 * MIN + S,
        Input::Revision(Revision {
            id: "7".into(),
            since: 0,
            origin: Origin::Rollout,
            definite: true,
        }),
    ));
    assert!(!has(&fx, "journal:rollback_finished"), "{fx:?}");
}

#[test]
fn an_evaluation_begun_under_an_earlier_revision_does_not_count_for_the_new_one() {
    let mut m = machine();
    m.step(0, rollout("7", 0));
    let of = |rev: &str| {
        let mut e = Evaluation::new(MIN, vec![check(Fail)]);
        e.revision = Some(rev.into());
        Input::Evaluation(e)
    };
    m.step(MIN, of("6"));
    assert_eq!(m.streak, 0, "it measured revision 6");
    m.step(MIN, of("7"));
    assert_eq!(m.streak, 1);
}

// ---- Driven from outside: restoration, redefinition, cancellation, time --

#[test]
fn a_rollback_the_journal_started_and_the_memory_never_saw_is_resumed_not_restarted() {
    // Killed after journaling rollback_started, before the memory was saved.
    let mut m = machine();
    let journal = JournalSummary {
        open: Some(("shop-web-1".into(), "7".into())),
        bad: ["5".to_owned()].into(),
    };
    let fx = words(&m.step(
        10 * MIN,
        Input::Restore {
            memory: None,
            journal,
        },
    ));
    assert_eq!(fx, ["journal:rollback_resumed", "wait", "persist"]);
    assert!(m.bad_revisions.contains("5") && m.bad_revisions.contains("7"));
    assert_eq!(m.state(10 * MIN), State::RollingBack);
}

#[test]
fn a_journaled_rollback_the_memory_saw_finish_is_not_resumed() {
    let mut m = verifying();
    let id = rollback_id(&m);
    drive(
        &mut m,
        vec![(5 * MIN, eval(5 * MIN, Pass)), (7 * MIN, Input::Tick)],
    );
    let memory = m.memory();
    let mut restarted = machine();
    let fx = restarted.step(
        8 * MIN,
        Input::Restore {
            memory: Some(Box::new(memory)),
            journal: JournalSummary {
                open: Some((id, "7".into())),
                bad: Default::default(),
            },
        },
    );
    assert!(fx.is_empty(), "{:?}", words(&fx));
    assert_eq!(restarted.phase, Phase::Watching);
}

#[test]
fn a_redefinition_keeps_what_the_watch_remembers_and_starts_a_fresh_streak() {
    let mut m = machine();
    drive(
        &mut m,
        vec![
            (0, rollout("7", 0)),
            (MIN, eval(MIN, Fail)),
            (2 * MIN, eval(2 * MIN, Fail)),
        ],
    );
    let fx = m.step(
        2 * MIN,
        Input::Redefine(Policy {
            failure_threshold: 2,
            ..policy()
        }),
    );
    assert!(fx.is_empty());
    assert_eq!(m.streak, 0);
    assert_eq!(m.state(2 * MIN), State::Armed, "still armed for revision 7");
    let fx = drive(&mut m, vec![(3 * MIN, eval(3 * MIN, Fail))]);
    assert!(!has(&fx, "recheck"), "one failure is no streak of two");
    let fx = drive(&mut m, vec![(4 * MIN, eval(4 * MIN, Fail))]);
    assert!(has(&fx, "recheck"), "the new threshold decides: {fx:?}");
}

#[test]
fn a_cancelled_re_read_drops_the_decision_and_a_cancelled_undo_stays_to_be_resumed() {
    let mut m = deciding();
    let id = rollback_id(&m);
    let fx = words(&m.step(3 * MIN, Input::Cancelled { rollback_id: id }));
    assert_eq!(fx, ["journal:decision_dropped"]);
    assert_eq!(m.phase, Phase::Watching);

    let mut m = deciding();
    proceed(&mut m, 3 * MIN);
    let id = rollback_id(&m);
    let fx = m.step(3 * MIN, Input::Cancelled { rollback_id: id });
    assert!(fx.is_empty());
    assert!(matches!(m.phase, Phase::Acting { .. }));
    let fx = restart(&mut m, 4 * MIN);
    assert_eq!(
        words(&fx),
        ["journal:rollback_resumed", "wait", "persist"],
        "resumed by the next start, never ordered again"
    );
}

#[test]
fn the_next_deadline_is_when_verification_ends_or_the_state_changes_with_time() {
    let m = machine();
    assert_eq!(m.next_deadline(0), None, "nothing happens with time alone");
    let mut m = machine();
    m.step(0, rollout("7", 0));
    assert_eq!(
        m.next_deadline(MIN),
        Some(30 * MIN),
        "the arming window ends"
    );
    assert_eq!(m.next_deadline(31 * MIN), None);
    let v = verifying();
    let Phase::Verifying { since, .. } = v.phase else {
        panic!("verifying")
    };
    assert_eq!(v.next_deadline(since), Some(since + 2 * MIN));
    assert_eq!(
        v.next_deadline(since + 5 * MIN),
        Some(since + 5 * MIN),
        "overdue: at once"
    );
}

// Rolling back by hand (README, "rollbackd rollback").

fn manual(from: &str, to: Option<&str>) -> ManualRequest {
    ManualRequest {
        rollback_id: "shop-web-manual-1".into(),
        from: from.into(),
        to: to.map(str::to_owned),
        reason: "bad checkout".into(),
        operator: "alice@laptop".into(),
        dry_run: false,
        verify: true,
        notify: true,
        timeout: Some(5 * MIN),
    }
}

/// A watch on revision "7", long baked (not armed), nothing failing.
fn baked() -> Machine {
    let mut m = machine();
    drive(
        &mut m,
        vec![(0, rollout("7", 0)), (60 * MIN, eval(60 * MIN, Pass))],
    );
    assert!(!m.armed(60 * MIN));
    m
}

fn answer(m: &mut Machine, now: Millis, input: Input) -> Vec<Effect> {
    m.step(now, input)
}

fn records(fx: &[Effect]) -> Vec<&Record> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Journal(r) | Effect::Notify(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[test]
fn a_manual_rollback_goes_through_recheck_undo_wait_and_verify_told_once() {
    let mut m = baked();
    let now = 61 * MIN;
    let fx = m.step(now, Input::Manual(Box::new(manual("7", Some("5")))));
    assert_eq!(words(&fx), ["journal:decided", "recheck", "persist"]);
    // A revision the operator chose is not filtered by what is known bad.
    assert!(fx.iter().any(|e| matches!(e,
        Effect::Act(Action::Recheck { to: Some(t), avoid, .. }) if t == "5" && avoid.is_empty())));
    let r = records(&fx)[0];
    assert_eq!(r.trigger, Some(Trigger::Manual));
    assert_eq!(r.operator.as_deref(), Some("alice@laptop"));
    let id = "shop-web-manual-1".to_owned();
    let fx = answer(
        &mut m,
        now,
        Input::Rechecked {
            rollback_id: id.clone(),
            result: Recheck::Proceed,
        },
    );
    // Journaled before the undo; people hear of it once, at the end.
    assert_eq!(
        words(&fx),
        ["journal:rollback_started", "persist", "rollback"]
    );
    let Some(Effect::Act(Action::Undo(order))) = fx.last() else {
        panic!()
    };
    assert_eq!(order.trigger, Trigger::Manual);
    assert_eq!(order.to.as_deref(), Some("5"));
    assert_eq!(order.operator.as_deref(), Some("alice@laptop"));
    assert_eq!(order.reason, "bad checkout");
    let fx = answer(
        &mut m,
        now,
        Input::Acted {
            rollback_id: id.clone(),
            result: ActResult::Applied {
                to: Some("8".into()),
            },
        },
    );
    assert_eq!(words(&fx), ["journal:rollback_applied", "wait", "persist"]);
    assert!(fx.iter().any(
        |e| matches!(e, Effect::Act(Action::AwaitRollout { timeout: Some(t), .. }) if *t == 5 * MIN)
    ));
    // No cooldown from a manual rollback; the revision left is known bad.
    assert_eq!(m.cooldown_until, None);
    assert!(m.bad_revisions.contains("7"));
    let landed = Revision {
        id: "8".into(),
        since: now,
        origin: Origin::Rollback,
        definite: true,
    };
    let fx = answer(
        &mut m,
        now + S,
        Input::RolledOut {
            rollback_id: id.clone(),
            result: RolloutResult::Complete(Some(landed)),
        },
    );
    assert!(has(&words(&fx), "journal:verifying"));
    // The restored revision never arms.
    assert!(!m.armed(now + S));
    assert_eq!(m.state(now + S), State::Verifying);
    drive(&mut m, vec![(now + 30 * S, eval(now + 30 * S, Pass))]);
    let fx = m.step(now + 3 * MIN, Input::Tick);
    assert_eq!(
        words(&fx),
        [
            "journal:rollback_finished",
            "notify:manual_rollback",
            "persist"
        ]
    );
    let told = records(&fx)[1];
    assert_eq!(told.outcome, Some(Outcome::Recovered));
    assert_eq!(told.trigger, Some(Trigger::Manual));
    assert_eq!(told.operator.as_deref(), Some("alice@laptop"));
    assert_eq!(m.last_rollback().unwrap().trigger, Trigger::Manual);
    assert_eq!(m.manual, None);
}

#[test]
fn a_manual_rollback_that_does_not_recover_escalates_nothing() {
    let mut m = baked();
    let now = 61 * MIN;
    let mut req = manual("7", None);
    req.notify = false;
    m.step(now, Input::Manual(Box::new(req)));
    let id = "shop-web-manual-1".to_owned();
    m.step(
        now,
        Input::Rechecked {
            rollback_id: id.clone(),
            result: Recheck::Proceed,
        },
    );
    m.step(
        now,
        Input::Acted {
            rollback_id: id.clone(),
            result: ActResult::Applied {
                to: Some("8".into()),
            },
        },
    );
    m.step(
        now,
        Input::RolledOut {
            rollback_id: id.clone(),
            result: RolloutResult::Complete(None),
        },
    );
    let fx = drive(
        &mut m,
        vec![
            (now + S, eval(now + S, Fail)),
            (now + 2 * S, eval(now + 2 * S, Fail)),
            (now + 3 * S, eval(now + 3 * S, Fail)),
        ],
    );
    // --no-notify: journaled, nobody told; and no escalation either.
    assert_eq!(fx, ["journal:rollback_finished", "persist"]);
    assert_eq!(m.last_rollback().unwrap().outcome, Outcome::VerifyFailed);
    assert_ne!(m.state(now + 4 * S), State::Escalated);
}

#[test]
fn manual_rollbacks_are_refused_while_another_is_under_way_or_the_target_moved() {
    let mut m = deciding();
    assert!(
        m.manual_refusal(&manual("7", None))
            .unwrap()
            .contains("being decided")
    );
    proceed(&mut m, 3 * MIN);
    let why = m.manual_refusal(&manual("7", None)).unwrap();
    assert!(why.contains("already in progress"), "{why}");
    // Stepped anyway: journaled as dropped, the automatic one untouched.
    let fx = m.step(3 * MIN, Input::Manual(Box::new(manual("7", None))));
    assert_eq!(words(&fx), ["journal:decision_dropped"]);
    assert!(matches!(m.phase, Phase::Acting { .. }));

    let m = baked();
    let why = m.manual_refusal(&manual("6", None)).unwrap();
    assert!(why.contains("at revision 7 now, not 6"), "{why}");
    assert_eq!(m.manual_refusal(&manual("7", None)), None);
}

#[test]
fn a_manual_rollback_the_target_refuses_is_dropped_with_the_reason_never_escalated() {
    for (result, says) in [
        (Recheck::Paused, "paused"),
        (Recheck::NoPrevious, "no revision 3"),
        (
            Recheck::Failed("timeout".into()),
            "cannot re-read the target: timeout",
        ),
        (
            Recheck::Superseded(Revision {
                id: "9".into(),
                since: 0,
                origin: Origin::Rollout,
                definite: true,
            }),
            "revision 9 appeared",
        ),
    ] {
        let mut m = baked();
        m.step(61 * MIN, Input::Manual(Box::new(manual("7", Some("3")))));
        let fx = m.step(
            61 * MIN,
            Input::Rechecked {
                rollback_id: "shop-web-manual-1".into(),
                result,
            },
        );
        let dropped = records(&fx)
            .into_iter()
            .find(|r| r.event == EventKind::DecisionDropped)
            .unwrap();
        assert!(
            dropped.reason.as_deref().unwrap().contains(says),
            "{:?}",
            dropped.reason
        );
        assert_eq!(dropped.trigger, Some(Trigger::Manual));
        assert!(
            !words(&fx).iter().any(|w| w.starts_with("notify:")),
            "{:?}",
            words(&fx)
        );
        assert_eq!(m.phase, Phase::Watching);
        assert_eq!(m.manual, None);
    }
}

#[test]
fn a_manual_dry_run_proves_the_patch_and_tells_nobody() {
    let mut m = baked();
    let mut req = manual("7", None);
    req.dry_run = true;
    m.step(61 * MIN, Input::Manual(Box::new(req)));
    let id = "shop-web-manual-1".to_owned();
    let fx = words(&m.step(
        61 * MIN,
        Input::Rechecked {
            rollback_id: id.clone(),
            result: Recheck::Proceed,
        },
    ));
    assert_eq!(fx, ["persist", "dry-rollback"]);
    let fx = words(&m.step(
        61 * MIN,
        Input::Acted {
            rollback_id: id,
            result: ActResult::Applied {
                to: Some("5".into()),
            },
        },
    ));
    assert_eq!(fx, ["journal:would_roll_back", "persist"]);
    assert!(m.bad_revisions.is_empty());
    assert_eq!(m.phase, Phase::Watching);
}

#[test]
fn no_verify_ends_a_manual_rollback_once_it_rolled_out() {
    let mut m = baked();
    let mut req = manual("7", None);
    req.verify = false;
    m.step(61 * MIN, Input::Manual(Box::new(req)));
    let id = "shop-web-manual-1".to_owned();
    m.step(
        61 * MIN,
        Input::Rechecked {
            rollback_id: id.clone(),
            result: Recheck::Proceed,
        },
    );
    m.step(
        61 * MIN,
        Input::Acted {
            rollback_id: id.clone(),
            result: ActResult::Applied {
                to: Some("8".into()),
            },
        },
    );
    let fx = words(&m.step(
        62 * MIN,
        Input::RolledOut {
            rollback_id: id,
            result: RolloutResult::Complete(None),
        },
    ));
    assert_eq!(
        fx,
        [
            "journal:rollback_finished",
            "notify:manual_rollback",
            "persist"
        ]
    );
    assert_eq!(m.last_rollback().unwrap().outcome, Outcome::Unverified);
}

#[test]
fn a_manual_rollback_survives_a_restart_and_keeps_its_trigger() {
    let mut m = baked();
    m.step(61 * MIN, Input::Manual(Box::new(manual("7", None))));
    let id = "shop-web-manual-1".to_owned();
    m.step(
        61 * MIN,
        Input::Rechecked {
            rollback_id: id.clone(),
            result: Recheck::Proceed,
        },
    );
    let fx = restart(&mut m, 62 * MIN);
    let resumed = records(&fx)
        .into_iter()
        .find(|r| r.event == EventKind::RollbackResumed)
        .unwrap();
    assert_eq!(resumed.trigger, Some(Trigger::Manual));
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::Act(Action::AwaitRollout {
            timeout: Some(_),
            ..
        })
    )));
}

#[test]
fn someone_elses_undo_is_journaled_as_a_manual_rollback_never_armed_no_cooldown() {
    let mut m = machine();
    drive(&mut m, vec![(0, rollout("7", 0))]);
    assert!(m.armed(MIN));
    let back = Input::Revision(Revision {
        id: "8".into(),
        since: 2 * MIN,
        origin: Origin::Rollback,
        definite: true,
    });
    let fx = m.step(2 * MIN, back);
    assert_eq!(
        words(&fx),
        [
            "journal:manual_rollback",
            "notify:manual_rollback",
            "persist"
        ]
    );
    let r = records(&fx)[0];
    assert_eq!(
        (r.from_revision.as_deref(), r.to_revision.as_deref()),
        (Some("7"), Some("8"))
    );
    assert_eq!(r.trigger, Some(Trigger::Manual));
    assert!(!m.armed(2 * MIN));
    assert_eq!(m.cooldown_until, None);
    // Failing on the restored revision never rolls it back.
    let fx = drive(
        &mut m,
        vec![
            (3 * MIN, eval(3 * MIN, Fail)),
            (4 * MIN, eval(4 * MIN, Fail)),
            (5 * MIN, eval(5 * MIN, Fail)),
        ],
    );
    assert!(!has(&fx, "recheck"), "{fx:?}");
    // The first sighting after a start says nothing of who made it.
    let mut fresh = machine();
    let fx = fresh.step(
        0,
        Input::Revision(Revision {
            id: "8".into(),
            since: 0,
            origin: Origin::Rollback,
            definite: true,
        }),
    );
    assert_eq!(words(&fx), ["journal:revision_observed", "persist"]);
}
