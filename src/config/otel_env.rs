//! The OpenTelemetry environment variables, for what `[tracing]` leaves unset: a platform's
//! collector and sampling are usually given to every workload this way (the OpenTelemetry
//! Operator injects them), so a gateway that ignored them would need its own config per
//! cluster.
//!
//! Read: `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER` (`otlp` or `none`),
//! `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`, `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`,
//! `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.

use super::{Config, ConfigError, OtlpProtocol, TracingConfig};

/// Where a signal-agnostic `OTEL_EXPORTER_OTLP_ENDPOINT` puts traces over HTTP.
const HTTP_TRACES_PATH: &str = "v1/traces";

impl Config {
    /// Fills what `[tracing]` does not set from the OpenTelemetry environment variables
    /// `var` gives. A value the gateway cannot use is an error naming its variable.
    pub fn apply_otel_env(&mut self, var: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        apply(&mut self.tracing, &|name| var(name).filter(|v| !v.trim().is_empty()))
    }
}

fn apply(tracing: &mut TracingConfig, var: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    let error = |name: &str, message: String| ConfigError { key: format!("${name}"), message };
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    match var("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
        None | Some("otlp") => {}
        Some("none") => tracing.otlp_endpoint = None,
        Some(other) => {
            return Err(error(
                "OTEL_TRACES_EXPORTER",
                format!("{other:?}: the gateway exports with \"otlp\" or \"none\""),
            ));
        }
    }
    if disabled {
        tracing.otlp_endpoint = None;
    }
    if tracing.otlp_protocol.is_none() {
        for name in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
            if let Some(value) = var(name) {
                tracing.otlp_protocol = Some(protocol(&value).map_err(|m| error(name, m))?);
                break;
            }
        }
    }
    let exporting = !disabled && var("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) != Some("none");
    if tracing.otlp_endpoint.is_none() && exporting {
        tracing.otlp_endpoint = match (var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), var("OTEL_EXPORTER_OTLP_ENDPOINT")) {
            (Some(traces), _) => Some(traces.trim().to_owned()),
            (None, Some(base)) => Some(signal_endpoint(base.trim(), tracing.otlp_protocol.unwrap_or_default())),
            (None, None) => None,
        };
    }
    if tracing.service_name.is_none() {
        tracing.service_name = var("OTEL_SERVICE_NAME").map(|v| v.trim().to_owned());
    }
    if tracing.sample_ratio.is_none()
        && let Some(sampler) = var("OTEL_TRACES_SAMPLER")
    {
        let argument = var("OTEL_TRACES_SAMPLER_ARG");
        tracing.sample_ratio = Some(sample_ratio(sampler.trim(), argument.as_deref()).map_err(|m| {
            let name =
                if m.contains("OTEL_TRACES_SAMPLER_ARG") { "OTEL_TRACES_SAMPLER_ARG" } else { "OTEL_TRACES_SAMPLER" };
            error(name, m)
        })?);
    }
    Ok(())
}

fn protocol(value: &str) -> Result<OtlpProtocol, String> {
    match value.trim() {
        "grpc" => Ok(OtlpProtocol::Grpc),
        "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        other => Err(format!("{other:?}: the gateway sends \"grpc\" or \"http/protobuf\"")),
    }
}

/// The traces endpoint of a signal-agnostic base URL: over HTTP the spec appends
/// `v1/traces`; over gRPC the URL is the endpoint.
fn signal_endpoint(base: &str, protocol: OtlpProtocol) -> String {
    match protocol {
        OtlpProtocol::Grpc => base.to_owned(),
        OtlpProtocol::HttpProtobuf => format!("{}/{HTTP_TRACES_PATH}", base.trim_end_matches('/')),
    }
}

/// The share of new traces sampled. The gateway always follows a `traceparent`'s sampled
/// flag, so the `parentbased_` samplers and their plain forms mean the same here.
fn sample_ratio(sampler: &str, argument: Option<&str>) -> Result<f64, String> {
    let ratio = || -> Result<f64, String> {
        let Some(argument) = argument else { return Ok(1.0) };
        match argument.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => Err(format!("OTEL_TRACES_SAMPLER_ARG {argument:?} is not a ratio between 0 and 1")),
        }
    };
    match sampler {
        "always_on" | "parentbased_always_on" => Ok(1.0),
        "always_off" | "parentbased_always_off" => Ok(0.0),
        "traceidratio" | "parentbased_traceidratio" => ratio(),
        other => Err(format!(
            "{other:?}: the gateway samples with always_on, always_off, traceidratio or their parentbased_ forms"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(tracing: TracingConfig, vars: &[(&str, &str)]) -> Result<TracingConfig, ConfigError> {
        let mut config = Config { tracing, ..Config::default() };
        config.apply_otel_env(&|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()))?;
        Ok(config.tracing)
    }

    #[test]
    fn the_environment_fills_what_the_file_leaves_unset() {
        let t = applied(
            TracingConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_SERVICE_NAME", "edge"),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ],
        )
        .unwrap();
        assert_eq!(t.otlp_endpoint.as_deref(), Some("http://collector:4318/v1/traces"));
        assert_eq!(t.otlp_protocol, Some(OtlpProtocol::HttpProtobuf));
        assert_eq!(t.service_name(), "edge");
        assert_eq!(t.sample_ratio(), 0.25);

        let file = TracingConfig {
            otlp_endpoint: Some("http://mine:4317".into()),
            service_name: Some("from-file".into()),
            sample_ratio: Some(0.5),
            ..TracingConfig::default()
        };
        let t = applied(
            file.clone(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4317"),
                ("OTEL_SERVICE_NAME", "env"),
                ("OTEL_TRACES_SAMPLER", "always_off"),
            ],
        )
        .unwrap();
        assert_eq!(t, file, "the file wins");

        let grpc = applied(TracingConfig::default(), &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]).unwrap();
        assert_eq!(grpc.otlp_endpoint.as_deref(), Some("http://c:4317"), "gRPC takes the base as it is");
        let traces = applied(
            TracingConfig::default(),
            &[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x"),
            ],
        )
        .unwrap();
        assert_eq!(traces.otlp_endpoint.as_deref(), Some("http://c:4318/custom"), "the traces endpoint as it is");
    }

    #[test]
    fn export_can_be_turned_off_and_bad_values_name_their_variable() {
        let on = TracingConfig { otlp_endpoint: Some("http://c:4317".into()), ..TracingConfig::default() };
        assert_eq!(applied(on.clone(), &[("OTEL_SDK_DISABLED", "true")]).unwrap().otlp_endpoint, None);
        assert_eq!(applied(on, &[("OTEL_TRACES_EXPORTER", "none")]).unwrap().otlp_endpoint, None);
        let bad = |vars: &[(&str, &str)]| applied(TracingConfig::default(), vars).unwrap_err().key;
        assert_eq!(bad(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]), "$OTEL_EXPORTER_OTLP_PROTOCOL");
        assert_eq!(bad(&[("OTEL_TRACES_SAMPLER", "jaeger_remote")]), "$OTEL_TRACES_SAMPLER");
        assert_eq!(
            bad(&[("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "2")]),
            "$OTEL_TRACES_SAMPLER_ARG"
        );
        assert_eq!(bad(&[("OTEL_TRACES_EXPORTER", "zipkin")]), "$OTEL_TRACES_EXPORTER");
    }
}
