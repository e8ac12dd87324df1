//! Prometheus checks: the `/api/v1/query` client, the parsing of every
//! result type (with `NaN` and `±Inf`), the judging of thresholds (absolute
//! and relative to the baseline taken when the rollout began), and the
//! coalescing of identical queries within one interval.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{HttpAuth, OnError, OnNoData, PrometheusCheck, PrometheusSource};
use crate::engine::{CheckResult, Verdict, fmt_value};

pub type Labels = BTreeMap<String, String>;

/// One number of a result, with the labels of its series.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    Vector(Vec<Sample>),
    Scalar(f64),
    /// Range vectors: each series is judged by its latest value.
    Matrix(Vec<Sample>),
    String(String),
}

impl QueryResult {
    /// The numbers to judge; `None` for a string result.
    pub fn samples(&self) -> Option<Vec<Sample>> {
        match self {
            QueryResult::Vector(s) | QueryResult::Matrix(s) => Some(s.clone()),
            QueryResult::Scalar(v) => Some(vec![Sample {
                labels: Labels::new(),
                value: *v,
            }]),
            QueryResult::String(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub result: QueryResult,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("Prometheus is unreachable: {0}")]
    Unreachable(String),
    #[error("the query timed out")]
    Timeout,
    #[error("Prometheus answered {status}: {message}")]
    Server { status: u16, message: String },
    /// 400/422 (`bad_data`, `execution`): the query itself is wrong.
    #[error("the query is invalid ({error_type}): {message}")]
    BadQuery { error_type: String, message: String },
    #[error("unreadable answer from Prometheus: {0}")]
    Malformed(String),
    /// Any other 4xx: credentials, URL or a proxy in the way.
    #[error(
        "Prometheus refused the request (HTTP {status}); check the source's url and credentials: {message}"
    )]
    Refused { status: u16, message: String },
    #[error("the answer is larger than {} MiB", MAX_ANSWER / (1024 * 1024))]
    TooLarge,
}

/// Answers larger than this are refused: an instant query that returns
/// more is not a health check.
pub const MAX_ANSWER: usize = 16 * 1024 * 1024;

impl QueryError {
    /// A configuration problem, never a service failure (the README's "How it decides").
    pub fn is_config_problem(&self) -> bool {
        matches!(
            self,
            QueryError::BadQuery { .. } | QueryError::Refused { .. } | QueryError::TooLarge
        )
    }
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorItem {
    #[serde(default)]
    metric: Labels,
    value: (f64, String),
}

#[derive(Deserialize)]
struct MatrixItem {
    #[serde(default)]
    metric: Labels,
    values: Vec<(f64, String)>,
}

/// Prometheus writes sample values as strings: `"0.5"`, `"NaN"`, `"+Inf"`.
pub fn parse_value(s: &str) -> Result<f64, QueryError> {
    s.parse::<f64>()
        .map_err(|_| QueryError::Malformed(format!("{s:?} is not a sample value")))
}

/// Reads an answer of `/api/v1/query`. The body is read before the status:
/// Prometheus explains a 400 in its JSON.
pub fn parse_response(status: u16, body: &[u8]) -> Result<Answer, QueryError> {
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(_) if status >= 500 => {
            let text = String::from_utf8_lossy(body);
            return Err(QueryError::Server {
                status,
                message: excerpt(&text, 200),
            });
        }
        // 401, 403, 404 from an auth proxy or a wrong URL: the configuration
        // is wrong, the service may be fine.
        Err(_) if status >= 400 => {
            let text = String::from_utf8_lossy(body);
            return Err(QueryError::Refused {
                status,
                message: excerpt(&text, 200),
            });
        }
        Err(e) => return Err(QueryError::Malformed(e.to_string())),
    };
    if envelope.status != "success" {
        let error_type = envelope.error_type.unwrap_or_else(|| "unknown".into());
        let message = envelope.error.unwrap_or_default();
        return Err(match (status, error_type.as_str()) {
            (400 | 422, _) | (_, "bad_data") => QueryError::BadQuery {
                error_type,
                message,
            },
            (503, _) | (_, "timeout") => QueryError::Timeout,
            _ => QueryError::Server {
                status,
                message: format!("{error_type}: {message}"),
            },
        });
    }
    let data = envelope
        .data
        .ok_or_else(|| QueryError::Malformed("no data in a successful answer".into()))?;
    let bad =
        |e: serde_json::Error| QueryError::Malformed(format!("{} result: {e}", data.result_type));
    let result = match data.result_type.as_str() {
        "vector" => {
            let items: Vec<VectorItem> =
                serde_json::from_value(data.result.clone()).map_err(bad)?;
            let samples = items
                .into_iter()
                .map(|i| {
                    Ok(Sample {
                        labels: i.metric,
                        value: parse_value(&i.value.1)?,
                    })
                })
                .collect::<Result<_, QueryError>>()?;
            QueryResult::Vector(samples)
        }
        "matrix" => {
            let items: Vec<MatrixItem> =
                serde_json::from_value(data.result.clone()).map_err(bad)?;
            let mut samples = Vec::new();
            for i in items {
                if let Some((_, v)) = i.values.last() {
                    samples.push(Sample {
                        labels: i.metric,
                        value: parse_value(v)?,
                    });
                }
            }
            QueryResult::Matrix(samples)
        }
        "scalar" => {
            let (_, v): (f64, String) = serde_json::from_value(data.result.clone()).map_err(bad)?;
            QueryResult::Scalar(parse_value(&v)?)
        }
        "string" => {
            let (_, v): (f64, String) = serde_json::from_value(data.result.clone()).map_err(bad)?;
            QueryResult::String(v)
        }
        other => {
            return Err(QueryError::Malformed(format!(
                "unknown result type {other:?}"
            )));
        }
    };
    Ok(Answer {
        result,
        warnings: envelope.warnings,
    })
}

fn excerpt(text: &str, max: usize) -> String {
    let t: String = text.chars().filter(|c| !c.is_control()).take(max).collect();
    if text.chars().count() > max {
        format!("{t}…")
    } else {
        t
    }
}

/// Baselines of a relative check: each series' value when the rollout began.
pub type Baseline = Vec<Sample>;

fn base_for(baseline: &Baseline, labels: &Labels) -> Option<f64> {
    baseline
        .iter()
        .find(|b| &b.labels == labels)
        .or(if baseline.len() == 1 {
            baseline.first()
        } else {
            None
        })
        .map(|b| b.value)
        .filter(|v| v.is_finite())
}

fn verdict_for(policy: OnNoData) -> Verdict {
    match policy {
        OnNoData::Inconclusive => Verdict::Inconclusive,
        OnNoData::Fail => Verdict::Fail,
        OnNoData::Pass => Verdict::Pass,
    }
}

/// The result of a check whose query could not be answered.
pub fn judge_error(check: &PrometheusCheck, error: &QueryError) -> CheckResult {
    let result = match (error.is_config_problem(), check.on_error) {
        // A wrong query must never roll a service back.
        (true, _) => Verdict::Inconclusive,
        (false, OnError::Fail) => Verdict::Fail,
        (false, OnError::Inconclusive) => Verdict::Inconclusive,
    };
    base_result(check, result, None, Labels::new(), error.to_string())
}

fn base_result(
    check: &PrometheusCheck,
    result: Verdict,
    value: Option<f64>,
    labels: Labels,
    detail: String,
) -> CheckResult {
    CheckResult {
        kind: "prometheus".into(),
        name: check.name.clone(),
        result,
        value,
        threshold: check.threshold_text(),
        labels,
        detail,
    }
}

/// Judges an answer against the check's thresholds. A vector fails if any
/// series violates a threshold; the worst offender is reported.
pub fn judge(check: &PrometheusCheck, answer: &Answer, baseline: Option<&Baseline>) -> CheckResult {
    let Some(samples) = answer.result.samples() else {
        return base_result(
            check,
            Verdict::Inconclusive,
            None,
            Labels::new(),
            "the query returned a string, not a number".into(),
        );
    };
    let numbers: Vec<&Sample> = samples.iter().filter(|s| !s.value.is_nan()).collect();
    if numbers.is_empty() {
        let what = if samples.is_empty() {
            "the query returned no data"
        } else {
            "the query returned NaN"
        };
        let policy = match check.on_no_data {
            OnNoData::Inconclusive => "inconclusive",
            OnNoData::Fail => "fail",
            OnNoData::Pass => "pass",
        };
        return base_result(
            check,
            verdict_for(check.on_no_data),
            None,
            Labels::new(),
            format!("{what} (on_no_data = {policy})"),
        );
    }
    let relative = check.max_increase.is_some() || check.min_decrease.is_some();
    let absolute = check.max.is_some() || check.min.is_some();
    let mut worst: Option<(f64, &Sample, String)> = None;
    let mut violating = 0;
    let mut missing_base = false;
    for s in &numbers {
        let v = s.value;
        let mut why: Vec<(f64, String)> = Vec::new();
        if let Some(max) = check.max
            && v > max
        {
            why.push((
                v - max,
                format!("{} > max {}", fmt_value(v), fmt_value(max)),
            ));
        }
        if let Some(min) = check.min
            && v < min
        {
            why.push((
                min - v,
                format!("{} < min {}", fmt_value(v), fmt_value(min)),
            ));
        }
        if relative {
            match baseline.and_then(|b| base_for(b, &s.labels)) {
                Some(base) => {
                    if let Some(f) = check.max_increase
                        && v > base * f
                        && base > 0.0
                    {
                        why.push((
                            v / base,
                            format!(
                                "{} > {}x the baseline {}",
                                fmt_value(v),
                                fmt_value(f),
                                fmt_value(base)
                            ),
                        ));
                    }
                    if let Some(f) = check.min_decrease
                        && v < base * f
                    {
                        why.push((
                            base / v.max(f64::MIN_POSITIVE),
                            format!(
                                "{} < {}x the baseline {}",
                                fmt_value(v),
                                fmt_value(f),
                                fmt_value(base)
                            ),
                        ));
                    }
                }
                None => missing_base = true,
            }
        }
        if let Some((score, text)) = why.into_iter().max_by(|a, b| a.0.total_cmp(&b.0)) {
            violating += 1;
            if worst.as_ref().is_none_or(|w| score > w.0) {
                worst = Some((score, s, text));
            }
        }
    }
    let mut warnings = String::new();
    if !answer.warnings.is_empty() {
        warnings = format!("; Prometheus warns: {}", answer.warnings.join("; "));
    }
    if let Some((_, s, text)) = worst {
        let detail = if numbers.len() > 1 {
            format!("{text} ({violating} of {} series){warnings}", numbers.len())
        } else {
            format!("{text}{warnings}")
        };
        return base_result(
            check,
            Verdict::Fail,
            Some(s.value),
            s.labels.clone(),
            detail,
        );
    }
    if missing_base && !absolute {
        return base_result(
            check,
            Verdict::Inconclusive,
            None,
            Labels::new(),
            format!("no baseline from before the rollout to compare with{warnings}"),
        );
    }
    // Passing: report the value closest to a threshold.
    let shown = if check.min.is_some() && check.max.is_none() {
        numbers.iter().min_by(|a, b| a.value.total_cmp(&b.value))
    } else {
        numbers.iter().max_by(|a, b| a.value.total_cmp(&b.value))
    };
    let s = shown.copied().cloned().unwrap_or(Sample {
        labels: Labels::new(),
        value: f64::NAN,
    });
    base_result(
        check,
        Verdict::Pass,
        Some(s.value),
        s.labels,
        warnings.trim_start_matches("; ").to_owned(),
    )
}

/// A client of one Prometheus source.
#[derive(Clone)]
pub struct Source {
    pub name: String,
    config: PrometheusSource,
    http: reqwest::Client,
}

impl Source {
    pub fn new(name: &str, config: &PrometheusSource, http: reqwest::Client) -> Self {
        Self {
            name: name.to_owned(),
            config: config.clone(),
            http,
        }
    }

    /// An instant query (`time` in seconds since the epoch, for baselines),
    /// sent as a form POST so that long queries fit.
    pub async fn query(
        &self,
        query: &str,
        time: Option<f64>,
        timeout: Duration,
    ) -> Result<Answer, QueryError> {
        let timeout = timeout.min(self.config.timeout);
        let url = format!("{}/api/v1/query", self.config.url.trim_end_matches('/'));
        let mut form: Vec<(&str, String)> = vec![
            ("query", query.to_owned()),
            ("timeout", format!("{}ms", timeout.as_millis())),
        ];
        if let Some(t) = time {
            form.push(("time", format!("{t:.3}")));
        }
        let mut req = self
            .http
            .post(&url)
            .form(&form)
            .timeout(timeout + Duration::from_millis(500));
        for (k, v) in &self.config.headers {
            req = req.header(k, v.expose());
        }
        req = match &self.config.auth {
            HttpAuth::None => req,
            HttpAuth::Bearer(t) => req.bearer_auth(t.expose()),
            HttpAuth::Basic { username, password } => {
                req.basic_auth(username, Some(password.expose()))
            }
        };
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(QueryError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        parse_response(status, &body)
    }
}

fn transport(e: reqwest::Error) -> QueryError {
    if e.is_timeout() {
        QueryError::Timeout
    } else {
        // The URL may carry credentials: never in a message.
        QueryError::Unreachable(crate::check::error_chain(&e.without_url()))
    }
}

/// Identical queries to one source within one interval are sent once: the
/// first asks, the others share its answer (the README's "How it decides"). "Within one
/// interval" means within one slot of the wall clock, `[k·interval,
/// (k+1)·interval)`: every watch of that interval, whatever its phase, shares
/// the slot's answer, and a watch's next evaluation always asks anew.
#[derive(Default)]
pub struct Coalescer {
    entries: Mutex<HashMap<QueryKey, Cell>>,
    sent: std::sync::atomic::AtomicU64,
    shared: std::sync::atomic::AtomicU64,
}

/// Source, query, evaluation time (ms), slot length (ms) and slot number.
type QueryKey = (String, String, Option<u64>, u64, u64);

type Cell = Arc<tokio::sync::OnceCell<Result<Answer, QueryError>>>;

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Coalescer {
    /// Asks `source` unless an identical query was asked in the current
    /// slot of length `slot`.
    pub async fn query(
        &self,
        source: &Source,
        query: &str,
        time: Option<f64>,
        timeout: Duration,
        slot: Duration,
        permits: &tokio::sync::Semaphore,
    ) -> Result<Answer, QueryError> {
        let slot_ms = (slot.as_millis() as u64).max(1);
        let now = epoch_ms();
        let key: QueryKey = (
            source.name.clone(),
            query.to_owned(),
            time.map(|t| (t * 1000.0) as u64),
            slot_ms,
            now / slot_ms,
        );
        let cell = {
            let Ok(mut entries) = self.entries.lock() else {
                return source.query(query, time, timeout).await;
            };
            if entries.len() > 4096 {
                // Past slots are never asked for again.
                entries.retain(|k, _| (k.4 + 1) * k.3 >= now);
            }
            match entries.get(&key) {
                Some(cell) => {
                    self.shared
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    cell.clone()
                }
                None => {
                    let cell: Cell = Arc::default();
                    entries.insert(key.clone(), cell.clone());
                    cell
                }
            }
        };
        let answer = cell
            .get_or_init(|| async {
                // Only a request actually sent takes a permit: waiting on a
                // shared answer must not starve other checks.
                let _permit = permits.acquire().await;
                self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                source.query(query, time, timeout).await
            })
            .await
            .clone();
        if answer.is_err()
            && let Ok(mut entries) = self.entries.lock()
            && entries.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell))
        {
            // A failure is not remembered: the next asker tries again.
            entries.remove(&key);
        }
        answer
    }

    /// Queries sent, and queries answered from another's request.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.sent.load(Relaxed), self.shared.load(Relaxed))
    }
}

#[cfg(test)]
mod tests;
