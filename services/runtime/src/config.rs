//! Settings: every binary declares its settings as one `#[derive(clap::Parser)]` struct whose
//! fields are flags with an environment variable (`env = "..."`) and a default, flattening the
//! shared [`KafkaArgs`](crate::kafka::KafkaArgs) and [`LogArgs`](crate::telemetry::LogArgs).
//! `--help` is the reference; `make reference` writes every binary's `--help` into
//! docs/reference/configuration.md, and a test fails when that file is stale.
//!
//! The binaries are configured by environment variables (the Helm chart, the tests and the
//! lab set them), so parsing keeps two rules clap's own `env` handling does not have:
//!
//! - a variable that is set but blank counts as unset (the default applies);
//! - a value that does not parse is an error naming the variable, e.g.
//!   `environment variable BULK_MAX="lots" is invalid: invalid digit found in string`,
//!   never silently replaced by the default.
//!
//! A flag on the command line wins over its variable. Each flag is its variable in kebab
//! case (`BULK_MAX` is `--bulk-max`).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::str::FromStr;

use clap::error::ErrorKind;
use clap::{Command, CommandFactory, FromArgMatches};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    /// A bad command line, or `--help` / `--version` (clap's message and exit code).
    #[error("{0}")]
    Cli(#[from] clap::Error),
}

/// `A`'s command as `--help` shows it: every variable named, no value shown (the
/// environment's values are nobody's business in a help text, and a password is one).
pub fn command<A: CommandFactory>() -> Command {
    A::command().mut_args(|a| a.hide_env_values(true))
}

/// Settings `A` from the process's command line and environment. `--help`, `--version` and
/// a bad command line print clap's message and exit as clap does (0, or 2); a bad
/// environment variable is an error for the caller.
pub fn from_env<A: CommandFactory + FromArgMatches>() -> Result<A, ConfigError> {
    match parse_from(std::env::args_os(), |name| std::env::var(name).ok()) {
        Err(ConfigError::Cli(e)) => e.exit(),
        other => other,
    }
}

/// Settings `A` of `program` from the variables `vars` alone (no command line): what the
/// services' configuration tests parse.
pub fn parse_vars<A: CommandFactory + FromArgMatches>(
    program: &str,
    vars: &[(&str, &str)],
) -> Result<A, ConfigError> {
    parse_from([program], |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
}

/// Settings `A` from `args` (the program name first) and the environment `env` looks up.
pub fn parse_from<A, I, T>(args: I, env: impl Fn(&str) -> Option<String>) -> Result<A, ConfigError>
where
    A: CommandFactory + FromArgMatches,
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let shown = command::<A>();
    let mut args = args.into_iter().map(Into::into);
    let program = args
        .next()
        .unwrap_or_else(|| shown.get_name().to_string().into());
    // The variables become flags ahead of the command line (whose flags then win), so clap's
    // own reading of the process environment is switched off.
    let bare = A::command()
        .mut_args(|a| a.env(None::<&'static str>))
        .args_override_self(true);
    let mut from_env: Vec<(String, String, OsString)> = Vec::new();
    for arg in shown.get_arguments() {
        let (Some(name), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let name = name.to_string_lossy().into_owned();
        match env(&name) {
            Some(value) if !value.trim().is_empty() => {
                let flag = OsString::from(format!("--{long}={value}"));
                from_env.push((name, value, flag));
            }
            _ => {}
        }
    }
    let user: Vec<OsString> = args.collect();
    // `--help` and `--version` from `shown`, whose help names the variables. clap answers
    // them as it meets them on the command line, before it looks at any variable.
    let asked = std::iter::once(program.clone()).chain(user.iter().cloned());
    if let Err(e) = shown.clone().try_get_matches_from(asked) {
        if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
            return Err(e.into());
        }
    }
    let argv = std::iter::once(program.clone())
        .chain(from_env.iter().map(|(_, _, flag)| flag.clone()))
        .chain(user);
    match bare.clone().try_get_matches_from(argv) {
        Ok(mut matches) => Ok(A::from_arg_matches_mut(&mut matches)?),
        Err(e) => {
            // A variable's value that is wrong on its own is reported by its name.
            for (name, value, flag) in from_env {
                if let Err(alone) = bare.clone().try_get_matches_from([program.clone(), flag]) {
                    return Err(ConfigError::Invalid {
                        name,
                        value,
                        reason: reason(&alone),
                    });
                }
            }
            Err(e.into())
        }
    }
}

/// What clap says is wrong with a value, without its "error:" and usage lines.
fn reason(e: &clap::Error) -> String {
    if let Some(source) = std::error::Error::source(e) {
        return source.to_string();
    }
    let text = e.render().to_string();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A value parser: `s` without surrounding whitespace, parsed as `T`.
pub fn trimmed<T: FromStr>(s: &str) -> Result<T, T::Err> {
    s.trim().parse()
}

/// A value parser for `HTTP_ADDR`: a socket address, or `:port` for all interfaces.
pub fn http_addr(raw: &str) -> Result<SocketAddr, std::net::AddrParseError> {
    let raw = raw.trim();
    if raw.starts_with(':') {
        format!("0.0.0.0{raw}").parse()
    } else {
        raw.parse()
    }
}

/// A value parser for a switch: `true` or `1`, `false` or `0`.
pub fn switch(s: &str) -> Result<bool, String> {
    match s.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err("expected true or false".to_string()),
    }
}

/// docs/reference/configuration.md: the `--help` of each binary (`(name, command)`), then
/// `notes`, as `make reference` writes it.
pub fn reference(binaries: Vec<(&str, Command)>, notes: &str) -> String {
    let mut out = String::from(
        "# Configuration\n\n\
         <!-- Generated by `make reference` from each binary's clap definition; a test fails \
         when this file is stale. Do not edit by hand. -->\n\n\
         Every setting of a service is an environment variable and a command-line flag (the \
         variable in kebab case: `BULK_MAX` is `--bulk-max`); a flag wins over its variable. \
         Every setting has a default, so the binaries run from `target/release/` without \
         arguments. A variable that is set but empty counts as unset. A value that does not \
         parse stops the service with a message naming the variable. This page is each \
         binary's `--help`:\n\n",
    );
    for (name, _) in &binaries {
        out.push_str(&format!("- [{name}](#{name})\n"));
    }
    for (name, cmd) in binaries {
        let mut cmd = cmd.mut_args(|a| a.hide_env_values(true));
        let help = cmd.render_long_help().to_string();
        let help: Vec<&str> = help.lines().map(str::trim_end).collect();
        out.push_str(&format!(
            "\n## {name}\n\n```text\n$ {name} --help\n{}\n```\n",
            help.join("\n").trim_end()
        ));
    }
    if !notes.is_empty() {
        out.push_str(&format!("\n{}\n", notes.trim_end()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A small settings struct in the services' style.
    #[derive(Debug, clap::Parser)]
    #[command(name = "svc")]
    struct Args {
        /// Largest bulk.
        #[arg(long, env = "BULK_MAX", default_value_t = 10, value_parser = trimmed::<u64>)]
        bulk_max: u64,
        /// Listen address.
        #[arg(long, env = "HTTP_ADDR", default_value = ":8080", value_parser = http_addr)]
        http_addr: SocketAddr,
        /// On or off.
        #[arg(long, env = "SWITCH", default_value = "true", value_parser = switch, action = clap::ArgAction::Set)]
        switch: bool,
        /// Optional.
        #[arg(long, env = "NAME")]
        name: Option<String>,
    }

    fn parse(args: &[&str], vars: &[(&str, &str)]) -> Result<Args, ConfigError> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_from(std::iter::once("svc").chain(args.iter().copied()), |k| {
            env.get(k).cloned()
        })
    }

    #[test]
    fn defaults_apply_when_unset_or_blank() {
        for vars in [
            &[][..],
            &[("BULK_MAX", " "), ("NAME", ""), ("SWITCH", "")][..],
        ] {
            let a = parse(&[], vars).unwrap();
            assert_eq!(a.bulk_max, 10);
            assert_eq!(a.http_addr.to_string(), "0.0.0.0:8080");
            assert!(a.switch);
            assert_eq!(a.name, None);
        }
    }

    #[test]
    fn variables_are_read_and_flags_win() {
        let vars = [
            ("BULK_MAX", " 20 "),
            ("HTTP_ADDR", "127.0.0.1:9"),
            ("SWITCH", "0"),
            ("NAME", "x"),
        ];
        let a = parse(&[], &vars).unwrap();
        assert_eq!(a.bulk_max, 20);
        assert_eq!(a.http_addr.to_string(), "127.0.0.1:9");
        assert!(!a.switch);
        assert_eq!(a.name.as_deref(), Some("x"));
        let a = parse(&["--bulk-max", "30", "--switch=true"], &vars).unwrap();
        assert_eq!(a.bulk_max, 30);
        assert!(a.switch);
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        let e = parse(&[], &[("BULK_MAX", "lots")]).unwrap_err().to_string();
        assert_eq!(
            e,
            "environment variable BULK_MAX=\"lots\" is invalid: invalid digit found in string"
        );
        let e = parse(&[], &[("NAME", "ok"), ("SWITCH", "yes")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SWITCH=\"yes\"") && e.contains("true or false"),
            "{e}"
        );
        let e = parse(&[], &[("HTTP_ADDR", "8080")])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("environment variable HTTP_ADDR=\"8080\""),
            "{e}"
        );
        // a bad flag is clap's usage error
        let e = parse(&["--bulk-max", "x"], &[]).unwrap_err();
        assert!(matches!(e, ConfigError::Cli(_)), "{e}");
    }

    #[test]
    fn help_names_the_variables_and_defaults_without_their_values() {
        // even with a bad variable, --help is the help
        let e = parse(&["--help"], &[("BULK_MAX", "lots")]).unwrap_err();
        let ConfigError::Cli(e) = e else {
            panic!("{e}")
        };
        assert_eq!(e.kind(), ErrorKind::DisplayHelp);
        let help = e.to_string();
        assert!(
            help.contains("[env: BULK_MAX]") && help.contains("[default: 10]"),
            "{help}"
        );
        assert!(!help.contains("[env: BULK_MAX="), "{help}");
        let doc = reference(vec![("svc", command::<Args>())], "");
        assert!(
            doc.contains("## svc\n") && doc.contains("--bulk-max <BULK_MAX>"),
            "{doc}"
        );
    }

    #[test]
    fn short_http_addr() {
        assert_eq!(http_addr(":8089").unwrap().to_string(), "0.0.0.0:8089");
        assert_eq!(http_addr("127.0.0.1:9").unwrap().to_string(), "127.0.0.1:9");
        assert!(http_addr("nowhere").is_err());
    }
}
