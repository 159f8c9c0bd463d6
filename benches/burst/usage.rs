//! Where the cores go during a burst: CPU time and context switches of the
//! broker, the handler and the load generator itself, read from `/proc`
//! before and after the burst (not the readback). On this 2-core machine all
//! three share the cores, so what the load generator and the handler spend
//! is taken from the broker.

use std::time::Duration;

/// What the broker, the handler and the load generator spent per 1,000
/// webhooks during one burst: CPU seconds and context switches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spent {
    pub broker: PerThousand,
    /// `None` in the direct phases, which run no handler.
    pub handler: Option<PerThousand>,
    pub load_generator: PerThousand,
}

impl Spent {
    /// Broker, handler, load generator.
    pub fn by_process(&self) -> [Option<PerThousand>; 3] {
        [Some(self.broker), self.handler, Some(self.load_generator)]
    }
}

/// CPU seconds and context switches per 1,000 webhooks.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerThousand {
    pub cpu_s: f64,
    pub switches: f64,
}

/// Counters of the three, read at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    broker: Counters,
    handler: Option<(u32, Counters)>,
    load_generator: Counters,
}

impl Reading {
    /// Reads the counters now; `handler` is the handler's pid, if one runs.
    pub fn now(handler: Option<u32>) -> Self {
        Self {
            broker: broker_pids()
                .into_iter()
                .map(Counters::of)
                .fold(Counters::default(), Counters::plus),
            handler: handler.map(|pid| (pid, Counters::of(pid))),
            load_generator: Counters::of(std::process::id()),
        }
    }

    /// What was spent since `self`, per 1,000 of `count` webhooks.
    pub fn spent_until_now(self, count: usize) -> Spent {
        let now = Self::now(self.handler.map(|(pid, _)| pid));
        let thousands = count as f64 / 1000.0;
        let per_thousand = |after: Counters, before: Counters| PerThousand {
            cpu_s: after.cpu.saturating_sub(before.cpu).as_secs_f64() / thousands,
            switches: after.switches.saturating_sub(before.switches) as f64 / thousands,
        };
        Spent {
            broker: per_thousand(now.broker, self.broker),
            handler: self
                .handler
                .zip(now.handler)
                .map(|((_, before), (_, after))| per_thousand(after, before)),
            load_generator: per_thousand(now.load_generator, self.load_generator),
        }
    }
}

/// CPU time and context switches of a process (every thread), so far.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    cpu: Duration,
    switches: u64,
}

impl Counters {
    /// Of process `pid`, or nothing when it is gone.
    fn of(pid: u32) -> Self {
        Self {
            cpu: cpu_time(pid),
            switches: switches(pid),
        }
    }

    fn plus(self, other: Self) -> Self {
        Self {
            cpu: self.cpu + other.cpu,
            switches: self.switches + other.switches,
        }
    }
}

/// User plus system time: fields 14 and 15 of `/proc/PID/stat`, in ticks of
/// 10 ms (CLK_TCK is 100 on Linux x86-64).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Voluntary and involuntary context switches of every thread.
fn switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter_map(|line| {
                    line.strip_prefix("voluntary_ctxt_switches:")
                        .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                })
                .collect::<Vec<_>>()
        })
        .sum()
}

/// Every RabbitMQ node on the machine (`beam.smp` processes): the bench's
/// broker, and any other one idling beside it.
fn broker_pids() -> Vec<u32> {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    processes
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "beam.smp"))
        .collect()
}
