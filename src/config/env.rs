//! Twelve-factor configuration: any string value of the TOML may name environment variables
//! — `${VAR}`, or `${VAR:-default}` when it may be unset or empty — and `$${` writes a literal
//! `${`. Values are substituted after parsing, so a variable's value never changes the
//! document's structure (a quote in a password cannot end its string).

use super::ConfigError;

/// Substitutes the variables in every string of `value`, reading them with `var`. Every
/// problem is reported with its key path.
pub(super) fn interpolate(
    value: &mut toml::Value,
    path: &str,
    var: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        toml::Value::String(text) if text.contains('$') => match substitute(text, var) {
            Ok(done) => *text = done,
            Err(message) => errors.push(ConfigError { key: path.to_owned(), message }),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{i}]"), var, errors);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                interpolate(item, &path, var, errors);
            }
        }
        _ => {}
    }
}

/// One string with its `${…}` replaced.
fn substitute(text: &str, var: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        if let Some(literal) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = literal;
            continue;
        }
        let Some(inner) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let end = inner.find('}').ok_or_else(|| format!("{after:?}: a ${{ without its closing }}"))?;
        let (name, default) = match inner[..end].split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (&inner[..end], None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("${{{}}}: {name:?} is not an environment variable name", &inner[..end]));
        }
        match (var(name).filter(|v| !v.is_empty() || default.is_none()), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => return Err(format!("${{{name}}}: the environment variable {name} is not set")),
        }
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("redis.internal".into()),
            "EMPTY" => Some(String::new()),
            "QUOTE" => Some("p\"w".into()),
            _ => None,
        }
    }

    #[test]
    fn variables_defaults_and_literals() {
        assert_eq!(substitute("redis://${HOST}:6379", &env).unwrap(), "redis://redis.internal:6379");
        assert_eq!(substitute("${MISSING:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(substitute("${EMPTY:-fallback}", &env).unwrap(), "fallback", "empty counts as unset with a default");
        assert_eq!(substitute("${EMPTY}", &env).unwrap(), "");
        assert_eq!(substitute("$${HOST} costs $5", &env).unwrap(), "${HOST} costs $5");
        assert_eq!(substitute("${QUOTE}", &env).unwrap(), "p\"w");
        assert!(substitute("${MISSING}", &env).unwrap_err().contains("MISSING is not set"));
        assert!(substitute("${HOST", &env).unwrap_err().contains("closing"));
        assert!(substitute("${a-b}", &env).unwrap_err().contains("not an environment variable name"));
    }

    #[test]
    fn every_string_of_the_document_is_substituted_and_errors_name_their_key() {
        let mut value: toml::Value =
            toml::from_str("a = \"${HOST}\"\n[t]\nlist = [\"x\", \"${NOPE}\"]\nn = 1\n").unwrap();
        let mut errors = Vec::new();
        interpolate(&mut value, "", &env, &mut errors);
        assert_eq!(value["a"].as_str(), Some("redis.internal"));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "t.list[1]");
    }
}
