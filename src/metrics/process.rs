//! The process's own metrics (`portcullis_process_*`): CPU, memory, open
//! file descriptors, threads and start time, as the Prometheus client
//! conventions name them. The `prometheus` crate's collector gathers them
//! but keeps CPU time in an integer counter of whole seconds, so a
//! gateway that has used 0.22 s reads 0 and `rate()` moves in steps of a
//! second; here the CPU counter is replaced by the process's user and
//! system time in microseconds, as seconds.

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily};

/// The crate's process collector with fractional CPU seconds.
pub struct ProcessMetrics {
    inner: prometheus::process_collector::ProcessCollector,
    cpu_name: String,
}

impl ProcessMetrics {
    pub fn new(namespace: &str) -> ProcessMetrics {
        ProcessMetrics {
            inner: prometheus::process_collector::ProcessCollector::new(
                std::process::id() as i32,
                namespace,
            ),
            cpu_name: format!("{namespace}_process_cpu_seconds_total"),
        }
    }
}

/// User and system CPU time of the whole process (every thread), in
/// seconds; `None` if the kernel does not answer.
pub fn cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `getrusage` writes a `rusage` into the pointer it is given,
    // which points to one; it is read only when the call succeeded.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.inner.collect();
        let Some(seconds) = cpu_seconds() else {
            return families;
        };
        for family in &mut families {
            if family.name() == self.cpu_name {
                for metric in family.mut_metric() {
                    let mut counter = proto::Counter::new();
                    counter.set_value(seconds);
                    metric.set_counter(counter);
                }
            }
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_are_fractional_and_named_as_the_conventions_say() {
        // Burn a little CPU so the process has used some.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let families = ProcessMetrics::new("portcullis").collect();
        let cpu = families
            .iter()
            .find(|f| f.name() == "portcullis_process_cpu_seconds_total")
            .expect("the CPU family is collected");
        let value = cpu.get_metric()[0].get_counter().value();
        let now = cpu_seconds().expect("getrusage answers");
        assert!(value > 0.0 && value <= now, "{value} vs {now}");
    }
}
