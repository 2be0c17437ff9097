//! Runs `wrk` (Debian's package), the independent HTTP load generator the page targets are
//! stated in, and reads its report.
use std::process::Command;

use anyhow::{Context, bail, ensure};

/// What one `wrk` run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
}

/// `wrk -t{threads} -c{connections} -d{seconds}s --latency` against `url`, with `cookie` as the
/// `Cookie` header. Fails when a response was not 2xx/3xx or a socket errored: a figure made of
/// error pages would be meaningless.
pub fn run(
    url: &str,
    threads: usize,
    connections: usize,
    seconds: u64,
    cookie: Option<&str>,
) -> anyhow::Result<Report> {
    let mut command = Command::new("wrk");
    command.args([
        &format!("-t{threads}"),
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    if let Some(cookie) = cookie {
        command.args(["-H", &format!("Cookie: {cookie}")]);
    }
    let output = command
        .arg(url)
        .output()
        .context("cannot run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse(&text)
}

fn parse(text: &str) -> anyhow::Result<Report> {
    if let Some(line) = text
        .lines()
        .find(|l| l.contains("Non-2xx or 3xx responses"))
    {
        bail!("wrk saw error responses: {}", line.trim());
    }
    if let Some(line) = text.lines().find(|l| l.contains("Socket errors")) {
        bail!("wrk saw socket errors: {}", line.trim());
    }
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
            .with_context(|| format!("no `{prefix}` in wrk's report: {text}"))
    };
    let requests_per_s: f64 = field("Requests/sec:")?.parse()?;
    let p50_ms = duration_ms(field("50%")?)?;
    let p99_ms = duration_ms(field("99%")?)?;
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .context("no request count in wrk's report")?
        .0
        .parse()?;
    Ok(Report {
        requests_per_s,
        p50_ms,
        p99_ms,
        requests,
    })
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.00s`.
fn duration_ms(value: &str) -> anyhow::Result<f64> {
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in `{value}`"))?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse()?;
    Ok(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => bail!("unknown unit in `{value}`"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 5s test @ http://127.0.0.1:8080/healthz
  2 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.34us  100.00us   5.00ms   90.00%
    Req/Sec    10.00k     1.00k   12.00k    70.00%
  Latency Distribution
     50%  480.00us
     75%  600.00us
     90%  700.00us
     99%    1.20ms
  100000 requests in 5.00s, 10.00MB read
Requests/sec:  19999.50
Transfer/sec:      2.00MB
";

    #[test]
    fn reads_a_report() {
        let report = parse(REPORT).unwrap();
        assert_eq!(
            report,
            Report {
                requests_per_s: 19999.5,
                p50_ms: 0.48,
                p99_ms: 1.2,
                requests: 100_000,
            }
        );
    }

    #[test]
    fn refuses_a_report_with_errors() {
        let with_errors = REPORT.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 3\nRequests/sec",
        );
        assert!(parse(&with_errors).is_err());
        let with_socket_errors = REPORT.replace(
            "Requests/sec",
            "  Socket errors: connect 0, read 2, write 0, timeout 0\nRequests/sec",
        );
        assert!(parse(&with_socket_errors).is_err());
    }

    #[test]
    fn reads_every_unit() {
        assert_eq!(duration_ms("812.00us").unwrap(), 0.812);
        assert_eq!(duration_ms("2.00s").unwrap(), 2000.0);
        assert!(duration_ms("3.00h").is_err());
    }
}
