//! The sweep controller's decisions, as pure functions over what it knows:
//! whether a stage is skipped as complete or (re)started — its launcher then
//! resumes from the stage's checkpoint —, what a finished launcher means
//! (done, stopped, retry, failed), which waiting stages fail because a stage
//! they need failed, and which stage starts next. `run` does the I/O.

use super::state::State;

/// A stage's state when the sweep opens: complete stages are skipped; every
/// other one waits to run (and resumes from its checkpoint, if it has one).
pub fn on_open(complete: bool) -> State {
    if complete {
        State::Done
    } else {
        State::Pending
    }
}

/// How a stage's launcher ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// Exit status 0.
    pub success: bool,
    /// The stage's results are on disk.
    pub complete: bool,
    /// The sweep is stopping (Ctrl-C / SIGTERM was forwarded).
    pub stopping: bool,
    /// Failed attempts before this one, in this sweep run.
    pub attempts: usize,
}

/// What to do about a launcher that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    Done,
    /// Stopped on request: it checkpointed, and the next sweep run resumes it.
    Interrupted,
    /// Back to pending; `attempt` is the failed-attempt count now.
    Retry {
        attempt: usize,
    },
    /// Out of retries.
    Fail,
}

pub fn after_exit(e: Ended, retries: usize) -> AfterExit {
    if e.success && e.complete {
        // Finished before the stop reached it: its results count.
        AfterExit::Done
    } else if e.stopping {
        AfterExit::Interrupted
    } else if e.attempts < retries {
        AfterExit::Retry { attempt: e.attempts + 1 }
    } else {
        AfterExit::Fail
    }
}

/// Pending stages that must fail because a stage they need (directly or
/// through another) has failed: `(stage, the failed need)`, in the order they
/// are found. `needs[i]` are the indices stage `i` needs.
pub fn propagate_failures(states: &[State], needs: &[Vec<usize>]) -> Vec<(usize, usize)> {
    let mut states = states.to_vec();
    let mut failed = Vec::new();
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..states.len() {
            if states[i] != State::Pending {
                continue;
            }
            if let Some(&bad) = needs[i].iter().find(|&&d| states[d] == State::Failed) {
                states[i] = State::Failed;
                failed.push((i, bad));
                changed = true;
            }
        }
    }
    failed
}

/// The stage to start on a free slot: the first pending one, in plan order,
/// that is not already running and whose needs are all done.
pub fn next_ready(states: &[State], needs: &[Vec<usize>], running: &[usize]) -> Option<usize> {
    (0..states.len()).find(|&i| {
        states[i] == State::Pending && !running.contains(&i) && needs[i].iter().all(|&d| states[d] == State::Done)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    #[test]
    fn complete_stages_are_skipped_and_the_rest_wait_to_run_or_resume() {
        assert_eq!(on_open(true), Done);
        assert_eq!(on_open(false), Pending);
    }

    fn ended(success: bool, complete: bool, stopping: bool, attempts: usize) -> Ended {
        Ended { success, complete, stopping, attempts }
    }

    #[test]
    fn a_stage_with_its_results_is_done() {
        assert_eq!(after_exit(ended(true, true, false, 0), 1), AfterExit::Done);
    }

    #[test]
    fn a_stage_that_finished_as_the_stop_came_is_still_done() {
        assert_eq!(after_exit(ended(true, true, true, 0), 1), AfterExit::Done);
    }

    #[test]
    fn a_stage_stopped_by_an_interrupt_is_interrupted_not_failed() {
        assert_eq!(after_exit(ended(false, false, true, 0), 1), AfterExit::Interrupted);
        assert_eq!(after_exit(ended(true, false, true, 5), 0), AfterExit::Interrupted);
    }

    #[test]
    fn a_failure_within_the_budget_is_retried() {
        assert_eq!(after_exit(ended(false, false, false, 0), 2), AfterExit::Retry { attempt: 1 });
        assert_eq!(after_exit(ended(false, false, false, 1), 2), AfterExit::Retry { attempt: 2 });
    }

    #[test]
    fn exit_zero_without_results_counts_as_a_failure() {
        assert_eq!(after_exit(ended(true, false, false, 0), 1), AfterExit::Retry { attempt: 1 });
        assert_eq!(after_exit(ended(true, false, false, 1), 1), AfterExit::Fail);
    }

    #[test]
    fn a_failure_past_the_budget_fails_the_stage() {
        assert_eq!(after_exit(ended(false, false, false, 2), 2), AfterExit::Fail);
        assert_eq!(after_exit(ended(false, false, false, 0), 0), AfterExit::Fail);
    }

    #[test]
    fn a_failure_fails_what_needs_it_through_any_chain() {
        // 0 failed; 1 needs 0; 2 needs 1; 3 needs nothing failed.
        let needs = vec![vec![], vec![0], vec![1], vec![]];
        assert_eq!(propagate_failures(&[Failed, Pending, Pending, Pending], &needs), [(1, 0), (2, 1)]);
    }

    #[test]
    fn only_waiting_stages_inherit_a_failure() {
        let needs = vec![vec![], vec![0], vec![0], vec![0]];
        assert!(propagate_failures(&[Failed, Done, Running, Interrupted], &needs).is_empty());
    }

    #[test]
    fn the_first_ready_stage_in_plan_order_starts_next() {
        // 0 done; 1 and 2 need 0; 3 needs 1.
        let needs = vec![vec![], vec![0], vec![0], vec![1]];
        assert_eq!(next_ready(&[Done, Pending, Pending, Pending], &needs, &[]), Some(1));
        assert_eq!(next_ready(&[Done, Pending, Pending, Pending], &needs, &[1]), Some(2));
    }

    #[test]
    fn a_stage_waits_until_every_need_is_done() {
        let needs = vec![vec![], vec![0]];
        assert_eq!(next_ready(&[Running, Pending], &needs, &[0]), None);
        assert_eq!(next_ready(&[Pending, Pending], &needs, &[]), Some(0));
        assert_eq!(next_ready(&[Failed, Pending], &needs, &[]), None);
    }

    #[test]
    fn nothing_starts_when_nothing_waits() {
        let needs = vec![vec![], vec![]];
        assert_eq!(next_ready(&[Done, Failed], &needs, &[]), None);
        assert_eq!(next_ready(&[Interrupted, Running], &needs, &[1]), None);
    }
}
