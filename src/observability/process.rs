//! The process metrics every Prometheus client library exports under the same names
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, …), read
//! from `/proc` when `/metrics` is scraped, so dashboards built for any exporter work as they are.
//!
//! On a system without `/proc` the metrics are left out; the scrape still succeeds.

use procfs::WithCurrentSystemInfo;
use procfs::process::{LimitValue, Process};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Collects the process metrics at each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of `/proc/self`.
struct Reading {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    start_time_seconds: f64,
    threads: i64,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
}

impl Reading {
    fn now() -> Option<Reading> {
        let process = Process::myself().ok()?;
        let stat = process.stat().ok()?;
        let ticks = procfs::ticks_per_second() as f64;
        let boot = procfs::boot_time_secs().ok()? as f64;
        let max_fds = process.limits().ok().and_then(|l| match l.max_open_files.soft_limit {
            LimitValue::Value(n) => i64::try_from(n).ok(),
            LimitValue::Unlimited => None,
        });
        Some(Reading {
            cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
            resident_bytes: i64::try_from(stat.rss_bytes().get()).unwrap_or(i64::MAX),
            virtual_bytes: i64::try_from(stat.vsize).unwrap_or(i64::MAX),
            start_time_seconds: boot + stat.starttime as f64 / ticks,
            threads: stat.num_threads,
            open_fds: process.fd_count().ok().and_then(|n| i64::try_from(n).ok()),
            max_fds,
        })
    }
}

fn gauge<T>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: T,
) -> std::fmt::Result
where
    ConstGauge<T>: EncodeMetric,
{
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, unit, gauge.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let Some(now) = Reading::now() else { return Ok(()) };
        let cpu = ConstCounter::new(now.cpu_seconds);
        let help = "Total user and system CPU time spent in seconds";
        cpu.encode(encoder.encode_descriptor("process_cpu_seconds", help, None, cpu.metric_type())?)?;
        let bytes = Some(&Unit::Bytes);
        gauge(&mut encoder, "process_resident_memory", "Resident memory size in bytes", bytes, now.resident_bytes)?;
        gauge(&mut encoder, "process_virtual_memory", "Virtual memory size in bytes", bytes, now.virtual_bytes)?;
        let start = "Start time of the process since the Unix epoch in seconds";
        gauge(&mut encoder, "process_start_time", start, Some(&Unit::Seconds), now.start_time_seconds)?;
        gauge(&mut encoder, "process_threads", "Number of OS threads in the process", None, now.threads)?;
        if let Some(open) = now.open_fds {
            gauge(&mut encoder, "process_open_fds", "Number of open file descriptors", None, open)?;
        }
        if let Some(max) = now.max_fds {
            gauge(&mut encoder, "process_max_fds", "Maximum number of open file descriptors", None, max)?;
        }
        Ok(())
    }
}
