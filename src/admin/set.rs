//! `SET key = value`: which setting the key names and what the value means.
//!
//! The console's SET is PgBouncer's: a string, turned into the setting's
//! type here and checked by the same [`settings::parse_value`] as a value
//! from the file. Applying it (a new `Config` snapshot with the value
//! replaced) is the caller's, as a reload is.

use crate::config::settings::{self, Kind, Setting, SettingValue};

use super::{sqlstate, AdminError};

/// The global setting (`[pooler]`, `[tls]`, `[metrics]`) that `key` names:
/// its SHOW CONFIG name (`listen_port`, `tls.client_tls_mode`), the same
/// with `pooler.` in front, or a bare name that only one section has
/// (`client_tls_mode`). Case-insensitive.
pub fn find_setting(key: &str) -> Option<&'static Setting> {
    let key = key.to_ascii_lowercase();
    let key = key.strip_prefix("pooler.").unwrap_or(&key);
    let globals = || {
        settings::SETTINGS
            .iter()
            .filter(|setting| setting.section.is_global())
    };
    if let Some(setting) = globals().find(|setting| setting.display_name() == key) {
        return Some(setting);
    }
    let mut bare = globals().filter(|setting| setting.name == key);
    match (bare.next(), bare.next()) {
        (Some(setting), None) => Some(setting),
        _ => None,
    }
}

/// Resolves `SET key = value` to the setting and its validated value.
///
/// Errors, with PostgreSQL's SQLSTATEs for the same mistakes in its own SET:
/// an unknown key is 42704 (`unrecognized configuration parameter`), a key
/// that needs a restart 55P02, a value the setting does not accept 22023.
///
/// Value text: integers and durations as in the file (`30`, `"5s"`, or
/// seconds); booleans also as on/off, yes/no, 1/0; lists comma-separated
/// (`'alice, bob'`, `''` for none); enum names case-insensitively.
pub fn resolve_set(key: &str, value: &str) -> Result<(&'static Setting, SettingValue), AdminError> {
    let setting = find_setting(key).ok_or_else(|| AdminError {
        code: sqlstate::UNDEFINED_OBJECT,
        message: format!("unrecognized configuration parameter \"{key}\""),
    })?;
    if !setting.reload {
        return Err(AdminError {
            code: sqlstate::CANT_CHANGE_RUNTIME_PARAM,
            message: format!(
                "parameter \"{}\" cannot be changed without restarting the pooler",
                setting.display_name()
            ),
        });
    }
    settings::parse_value(&setting.kind, &toml_value(&setting.kind, value))
        .map(|parsed| (setting, parsed))
        .map_err(|problem| AdminError {
            code: sqlstate::INVALID_PARAMETER_VALUE,
            message: format!(
                "invalid value for parameter \"{}\": {problem}",
                setting.display_name()
            ),
        })
}

/// The TOML value the file would hold for `text`. Text that is not of the
/// setting's type stays a string, so `parse_value` words the error.
fn toml_value(kind: &Kind, text: &str) -> toml::Value {
    let trimmed = text.trim();
    let string = || toml::Value::String(text.to_string());
    match kind {
        Kind::Int { .. } | Kind::Port | Kind::Duration { .. } => trimmed
            .parse::<i64>()
            .map_or_else(|_| string(), toml::Value::Integer),
        Kind::Bool => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => toml::Value::Boolean(true),
            "false" | "off" | "no" | "0" => toml::Value::Boolean(false),
            _ => string(),
        },
        Kind::StrList => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_string()))
                .collect(),
        ),
        Kind::Enum(_) => toml::Value::String(trimmed.to_ascii_lowercase()),
        Kind::Str | Kind::ListenSocket | Kind::Table => string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::settings::Section;

    fn ok(key: &str, value: &str) -> SettingValue {
        match resolve_set(key, value) {
            Ok((_, value)) => value,
            Err(e) => panic!("SET {key} = {value:?}: {e:?}"),
        }
    }

    fn code(key: &str, value: &str) -> &'static str {
        match resolve_set(key, value) {
            Ok(v) => panic!("SET {key} = {value:?} accepted: {v:?}"),
            Err(e) => e.code,
        }
    }

    #[test]
    fn keys_by_show_config_name_or_unique_bare_name() {
        let section = |key: &str| find_setting(key).map(|s| (s.section, s.name));
        assert_eq!(section("log_level"), Some((Section::Pooler, "log_level")));
        assert_eq!(section("LOG_LEVEL"), Some((Section::Pooler, "log_level")));
        assert_eq!(
            section("pooler.log_level"),
            Some((Section::Pooler, "log_level"))
        );
        assert_eq!(
            section("tls.client_tls_mode"),
            Some((Section::Tls, "client_tls_mode"))
        );
        assert_eq!(
            section("client_tls_mode"),
            Some((Section::Tls, "client_tls_mode"))
        );
        assert_eq!(
            section("metrics.listen"),
            Some((Section::Metrics, "listen"))
        );
        // Per-database keys are not global settings.
        assert_eq!(section("host"), None);
        assert_eq!(section("databases.NAME.host"), None);
        assert_eq!(section("nope"), None);
        for setting in settings::SETTINGS.iter().filter(|s| s.section.is_global()) {
            assert!(
                find_setting(&setting.display_name())
                    .is_some_and(|found| std::ptr::eq(found, setting)),
                "{}",
                setting.display_name()
            );
        }
    }

    #[test]
    fn values_take_the_setting_type() {
        assert_eq!(ok("default_pool_size", "30"), SettingValue::Int(30));
        assert_eq!(ok("default_pool_size", " 30 "), SettingValue::Int(30));
        assert_eq!(
            ok("server_lifetime", "30m"),
            SettingValue::Duration(Duration::from_secs(1800))
        );
        assert_eq!(
            ok("server_lifetime", "90"),
            SettingValue::Duration(Duration::from_secs(90))
        );
        assert_eq!(ok("log_level", "DEBUG"), SettingValue::Str("debug".into()));
        assert_eq!(
            ok("admin_users", "alice, bob"),
            SettingValue::List(vec!["alice".into(), "bob".into()])
        );
        assert_eq!(ok("admin_users", ""), SettingValue::List(vec![]));
        assert_eq!(
            ok("server_reset_query", "DISCARD ALL"),
            SettingValue::Str("DISCARD ALL".into())
        );
        assert_eq!(
            ok("server_reset_query", ""),
            SettingValue::Str(String::new())
        );
        assert_eq!(
            ok("client_tls_mode", "Require"),
            SettingValue::Str("require".into())
        );
    }

    #[test]
    fn errors_carry_postgres_sqlstates() {
        assert_eq!(code("no_such_key", "1"), "42704");
        assert_eq!(code("listen_port", "7000"), "55P02");
        assert_eq!(code("workers", "4"), "55P02");
        assert_eq!(code("metrics.listen", "127.0.0.1:9"), "55P02");
        assert_eq!(code("default_pool_size", "0"), "22023");
        assert_eq!(code("default_pool_size", "many"), "22023");
        assert_eq!(code("server_connect_timeout", "0"), "22023");
        assert_eq!(code("server_lifetime", "soon"), "22023");
        assert_eq!(code("log_level", "loud"), "22023");
        assert_eq!(code("pool_mode", "statement"), "22023");
        let e = resolve_set("default_pool_size", "many").err();
        let message = e.map(|e| e.message).unwrap_or_default();
        assert!(message.contains("\"default_pool_size\""), "{message}");
        assert!(message.contains("expected an integer"), "{message}");
    }
}
