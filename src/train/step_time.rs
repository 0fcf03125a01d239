//! Where a training step's time goes: data, forward/backward, optimizer and
//! communication, measured on the host between [`begin`] and [`end`].
//!
//! The step loop starts each step in [`Phase::Data`]; code that does a
//! phase's work marks it with a [`phase`] guard (the gradient reduction and
//! the control all-reduces are communication, the optimizer step is
//! optimizer, the stage's forward and backward are forward/backward), and the
//! guard gives the time back to the enclosing phase when it drops. Every
//! moment of the step is in exactly one phase, so the phases add up to the step.
//!
//! CPU work is synchronous, so on CPU every step is measured exactly. On a GPU
//! the host only queues kernels, and a host clock would charge their time to
//! whichever phase next waits for the device; so on a GPU only the steps that
//! the loop asks to [`begin`] with `sync` are measured, with the device
//! synchronised at each phase boundary. The step loop asks it for one step in
//! `log_every` (the step before each logging point): the other steps run
//! without any added synchronisation.
//!
//! The clock is per thread (the step loop's); work on other threads, such as
//! autograd's device threads on a GPU, falls in the phase that waits for it.

use std::cell::RefCell;
use std::time::Instant;
use tch::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Building the step's batches: examples to token ids and tensors on the device.
    Data,
    /// The model's forward and backward passes.
    ForwardBackward,
    /// Gradient clipping and the optimizer's update.
    Optimizer,
    /// Waiting for collectives: gradient reduction, parameter gathers, control values.
    Communication,
}

pub const PHASES: [Phase; 4] = [Phase::Data, Phase::ForwardBackward, Phase::Optimizer, Phase::Communication];

impl Phase {
    /// The phase's name in TensorBoard tags and logs.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Data => "data",
            Phase::ForwardBackward => "forward_backward",
            Phase::Optimizer => "optimizer",
            Phase::Communication => "communication",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Mean seconds per measured step in each phase since the last [`take`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    pub seconds: [f64; 4],
    /// Steps measured (on a GPU, only the synchronised ones).
    pub steps: u32,
}

impl Split {
    pub fn of(&self, p: Phase) -> f64 {
        self.seconds[p.index()]
    }

    pub fn total(&self) -> f64 {
        self.seconds.iter().sum()
    }
}

struct Clock {
    device: Device,
    sync: bool,
    current: Phase,
    since: Instant,
    step: [f64; 4],
}

#[derive(Default)]
struct Window {
    seconds: [f64; 4],
    measured: u32,
    /// Wall seconds of every step, measured or not (for throughput).
    wall: f64,
    steps: u32,
}

/// The steps since the last [`take`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Taken {
    /// The measured steps' mean split.
    pub split: Split,
    /// Wall seconds of all the steps, measured or not.
    pub wall: f64,
    /// All the steps.
    pub steps: u32,
}

thread_local! {
    static CLOCK: RefCell<Option<Clock>> = const { RefCell::new(None) };
    static WINDOW: RefCell<Window> = RefCell::new(Window::default());
}

impl Clock {
    /// Charge the time since the last boundary to the current phase, then switch.
    fn switch(&mut self, to: Phase) {
        if self.sync {
            synchronize(self.device);
        }
        let now = Instant::now();
        self.step[self.current.index()] += now.duration_since(self.since).as_secs_f64();
        self.since = now;
        self.current = to;
    }
}

fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Start timing a step on `device`, in [`Phase::Data`]. With `sync` on a GPU,
/// the device is synchronised at every phase boundary and the step is
/// measured; without it, a GPU step only counts towards the wall time.
pub fn begin(device: Device, sync: bool) {
    let sync = sync && device.is_cuda();
    if sync {
        synchronize(device);
    }
    CLOCK.with_borrow_mut(|c| {
        *c = Some(Clock { device, sync, current: Phase::Data, since: Instant::now(), step: [0.0; 4] })
    });
}

/// End the step begun last; it joins the current window.
pub fn end() {
    let Some(mut clock) = CLOCK.with_borrow_mut(Option::take) else { return };
    let current = clock.current;
    clock.switch(current);
    let measured = clock.sync || !clock.device.is_cuda();
    WINDOW.with_borrow_mut(|w| {
        w.wall += clock.step.iter().sum::<f64>();
        w.steps += 1;
        if measured {
            for (sum, s) in w.seconds.iter_mut().zip(clock.step) {
                *sum += s;
            }
            w.measured += 1;
        }
    });
}

/// The steps ended since the last call; starts a new window.
pub fn take() -> Taken {
    let w = WINDOW.with_borrow_mut(std::mem::take);
    let n = f64::from(w.measured.max(1));
    Taken { split: Split { seconds: w.seconds.map(|s| s / n), steps: w.measured }, wall: w.wall, steps: w.steps }
}

/// Marks a phase until dropped; then the enclosing phase resumes.
#[must_use = "the phase lasts as long as the guard"]
pub struct Guard {
    previous: Option<Phase>,
}

/// Time spent from now until the guard drops is `p`'s (no-op outside a step).
pub fn phase(p: Phase) -> Guard {
    let previous = CLOCK.with_borrow_mut(|c| {
        c.as_mut().map(|c| {
            let previous = c.current;
            c.switch(p);
            previous
        })
    });
    Guard { previous }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.previous {
            CLOCK.with_borrow_mut(|c| {
                if let Some(c) = c.as_mut() {
                    c.switch(p);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_unsynchronised_gpu_step_counts_for_the_wall_time_only() {
        let _ = take();
        begin(Device::Cuda(0), false);
        busy(10);
        end();
        let t = take();
        assert_eq!((t.split.steps, t.steps), (0, 1));
        assert!(t.wall >= 0.010 && t.split.total() == 0.0, "{t:?}");
    }

    fn busy(ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    #[test]
    fn nested_phases_charge_their_own_time_and_add_up_to_the_step() {
        let _ = take();
        begin(Device::Cpu, false);
        busy(20); // data
        {
            let _f = phase(Phase::ForwardBackward);
            busy(30);
            {
                let _c = phase(Phase::Communication);
                busy(40);
            }
            busy(10); // forward/backward again
            let _o = phase(Phase::Optimizer);
            busy(25);
        }
        busy(5); // back in data
        end();
        let Taken { split, wall, steps } = take();
        assert_eq!((split.steps, steps), (1, 1));
        let ms = |p| split.of(p) * 1000.0;
        // A sleep lasts at least as long as asked: each phase holds at least its own
        // sleeps, which a misplaced boundary would give to another phase.
        assert!(ms(Phase::Data) >= 25.0, "{split:?}");
        assert!(ms(Phase::ForwardBackward) >= 40.0, "{split:?}");
        assert!(ms(Phase::Communication) >= 40.0, "{split:?}");
        assert!(ms(Phase::Optimizer) >= 25.0, "{split:?}");
        assert!((split.total() - wall).abs() < 1e-9, "the phases add up to the step: {split:?} vs {wall}");
        // A new window starts empty.
        assert_eq!(take().steps, 0);
    }

    #[test]
    fn a_window_averages_its_steps_and_guards_outside_a_step_do_nothing() {
        let _ = take();
        {
            let _c = phase(Phase::Communication);
            busy(5);
        }
        for ms in [10, 30] {
            begin(Device::Cpu, false);
            let _o = phase(Phase::Optimizer);
            busy(ms);
            drop(_o);
            end();
        }
        let Taken { split, wall, steps } = take();
        assert_eq!((split.steps, steps), (2, 2));
        assert!(split.of(Phase::Optimizer) >= 0.020, "mean of 10 and 30 ms: {split:?}");
        assert!(split.of(Phase::Communication) == 0.0, "{split:?}");
        assert!(wall >= 0.040 && (wall / 2.0 - split.total()).abs() < 1e-9, "{wall} {split:?}");
    }
}
