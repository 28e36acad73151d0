use super::checks::toml_to_json;
use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

const VALID: &str = "[host]\nqueue_capacity = 8\nshutdown_timeout = \"5s\"\n[status]\naddress = \"127.0.0.1:0\"\n\
    [[plugin]]\nname = \"a\"\nlibrary = \"x\"\nsubscribe = [\"a.>\"]\nmax_restarts = 3\n\
    sha256 = \"00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff\"\n[plugin.config]\nk = [1, {a = 2}]\n";

/// What a value written in the file should give: a value, or the one
/// line that refuses it.
#[derive(Debug, Clone)]
enum Want<T> {
    Value(T),
    Problem(String),
}

impl<T: Clone> Want<T> {
    fn value(&self) -> Option<T> {
        match self {
            Want::Value(v) => Some(v.clone()),
            Want::Problem(_) => None,
        }
    }
}

/// A value as written (its TOML text) and what it should give.
type Written<T> = (String, Want<T>);

/// A size or count key: inside its bounds, or outside with the message.
fn size(limit: limits::Limit) -> impl Strategy<Value = Written<u64>> {
    let refuse = move |n: u64| {
        (
            n.to_string(),
            Want::Problem(format!(
                "`{}` must be between {} and {} (it is {n})",
                limit.key, limit.min, limit.max
            )),
        )
    };
    prop_oneof![
        6 => (limit.min..=limit.max).prop_map(|n| (n.to_string(), Want::Value(n))),
        1 => Just(limit.min).prop_map(|n| (n.to_string(), Want::Value(n))),
        1 => Just(limit.max).prop_map(|n| (n.to_string(), Want::Value(n))),
        1 => (limit.max + 1..=i64::MAX as u64).prop_map(refuse),
        1 => Just(limit.max + 1).prop_map(refuse),
        // Below the minimum, where there is room (else one more above).
        1 => Just(limit.min.checked_sub(1).unwrap_or(limit.max + 2)).prop_map(refuse),
    ]
}

/// A duration key; `zero_refused`: zero is not a value.
fn duration(key: &'static str, zero_refused: bool) -> impl Strategy<Value = Written<Duration>> {
    let units = prop_oneof![
        Just(("ms", 1u64)),
        Just(("s", 1000)),
        Just(("m", 60_000)),
        Just(("h", 3_600_000))
    ];
    let day_ms = limits::MAX_DURATION.as_millis() as u64;
    prop_oneof![
        6 => units.prop_flat_map(move |(unit, ms)| {
            // Mostly within the bound, sometimes over it.
            let most = day_ms / ms;
            (Just((unit, ms)), prop_oneof![6 => 0..=most, 1 => most + 1..=2 * most])
        }).prop_map(move |((unit, ms), n)| {
            let text = format!("{n}{unit}");
            let millis = n * ms;
            let want = if millis > day_ms {
                Want::Problem(format!("`{key}` must be at most 24h (it is {text})"))
            } else if millis == 0 && zero_refused {
                Want::Problem(format!("`{key}` must be more than zero"))
            } else {
                Want::Value(Duration::from_millis(millis))
            };
            (format!("{text:?}"), want)
        }),
        1 => Just(("24h", Want::Value(limits::MAX_DURATION))).prop_map(|(t, w)| (format!("{t:?}"), w)),
        1 => prop_oneof![Just("5"), Just("5 s"), Just("s"), Just("-1s"), Just("1.5s"), Just("3d"), Just(""), Just("99999999999999999999h")]
            .prop_map(|text| {
                let message = format!(
                    "invalid duration `{text}`: write a whole number and a unit, such as \"250ms\", \"5s\", \"1m\" or \"2h\""
                );
                (format!("{text:?}"), Want::Problem(message))
            }),
    ]
}

fn overflow() -> impl Strategy<Value = Option<Overflow>> {
    proptest::option::of(prop_oneof![
        Just(Overflow::Block),
        Just(Overflow::DropOldest),
        Just(Overflow::DropNewest)
    ])
}

#[derive(Debug, Clone)]
struct HostModel {
    queue_capacity: Option<Written<u64>>,
    overflow: Option<Overflow>,
    shutdown_timeout: Option<Written<Duration>>,
    max_event_bytes: Option<Written<u64>>,
}

#[derive(Debug, Clone)]
struct StatusModel {
    check_timeout: Option<Written<Duration>>,
    max_connections: Option<Written<u64>>,
    code: Option<u16>,
}

#[derive(Debug, Clone)]
struct PluginModel {
    name: String,
    library: String,
    subscribe: Vec<String>,
    enabled: Option<bool>,
    required: Option<bool>,
    queue_capacity: Option<Written<u64>>,
    overflow: Option<Overflow>,
    max_restarts: Option<Written<u64>>,
    restart_window: Option<Written<Duration>>,
    tick_interval: Option<Written<Duration>>,
    handler_timeout: Option<Written<Duration>>,
    sha256: Option<String>,
    config: Vec<(String, i64, String)>,
}

fn host() -> impl Strategy<Value = HostModel> {
    (
        proptest::option::of(size(limits::QUEUE_CAPACITY)),
        overflow(),
        proptest::option::of(duration("shutdown_timeout", false)),
        proptest::option::of(size(limits::MAX_EVENT_BYTES)),
    )
        .prop_map(
            |(queue_capacity, overflow, shutdown_timeout, max_event_bytes)| HostModel {
                queue_capacity,
                overflow,
                shutdown_timeout,
                max_event_bytes,
            },
        )
}

fn status() -> impl Strategy<Value = StatusModel> {
    (
        proptest::option::of(duration("check_timeout", true)),
        proptest::option::of(size(limits::MAX_CONNECTIONS)),
        proptest::option::of(
            prop_oneof![3 => 100u16..=599, 1 => 0u16..100, 1 => 600u16..=u16::MAX],
        ),
    )
        .prop_map(|(check_timeout, max_connections, code)| StatusModel {
            check_timeout,
            max_connections,
            code,
        })
}

fn plugin() -> impl Strategy<Value = PluginModel> {
    let name = prop_oneof![
        4 => prop_oneof![Just("a"), Just("b"), Just("c-1"), Just("D_2")].prop_map(str::to_owned),
        1 => prop_oneof![Just(""), Just("a b"), Just("é"), Just("a.b")].prop_map(str::to_owned),
        1 => Just("n".repeat(MAX_INSTANCE_NAME_BYTES)),
        1 => Just("n".repeat(MAX_INSTANCE_NAME_BYTES + 1)),
    ];
    let library = prop_oneof![
        Just("x"),
        Just("./libx.so"),
        Just("logger"),
        Just(""),
        Just("  ")
    ]
    .prop_map(str::to_owned);
    let pattern = prop_oneof![
        4 => prop_oneof![Just("a.>"), Just("*.b"), Just(">"), Just("orders.created"), Just("é.*")],
        1 => prop_oneof![Just("a.>.b"), Just("a..b"), Just(""), Just("a*"), Just("a b")],
    ]
    .prop_map(str::to_owned);
    let sha = prop_oneof![
        3 => "[0-9a-fA-F]{64}",
        1 => prop_oneof!["[0-9a-f]{0,63}", "[0-9a-f]{65,70}", "[0-9a-f]{63}[g-z]"],
    ];
    (
        (name, library, proptest::collection::vec(pattern, 0..4)),
        (
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
        ),
        (
            proptest::option::of(size(limits::QUEUE_CAPACITY)),
            overflow(),
            proptest::option::of(size(limits::MAX_RESTARTS)),
        ),
        (
            proptest::option::of(duration("restart_window", true)),
            proptest::option::of(duration("tick_interval", false)),
            proptest::option::of(duration("handler_timeout", false)),
        ),
        proptest::option::of(sha),
        // Unique keys: a key written twice is TOML's own error.
        proptest::collection::btree_map("[a-z]{1,6}", (any::<i64>(), "[ -~]{0,8}"), 0..3).prop_map(
            |table| {
                table
                    .into_iter()
                    .map(|(k, (n, s))| (k, n, s))
                    .collect::<Vec<_>>()
            },
        ),
    )
        .prop_map(
            |(
                (name, library, subscribe),
                (enabled, required),
                (queue_capacity, overflow, max_restarts),
                (restart_window, tick_interval, handler_timeout),
                sha256,
                config,
            )| PluginModel {
                name,
                library,
                subscribe,
                enabled,
                required,
                queue_capacity,
                overflow,
                max_restarts,
                restart_window,
                tick_interval,
                handler_timeout,
                sha256,
                config,
            },
        )
}

/// The file being written, and the problems it should be refused for
/// (at the byte where their value starts).
#[derive(Default)]
struct Doc {
    text: String,
    problems: Vec<(usize, String)>,
}

impl Doc {
    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    /// `key = value`; returns where the value starts.
    fn key(&mut self, key: &str, value: &str) -> usize {
        self.text.push_str(key);
        self.text.push_str(" = ");
        let at = self.text.len();
        self.text.push_str(value);
        self.text.push('\n');
        at
    }

    fn written<T: Clone>(&mut self, key: &str, value: &Option<Written<T>>) -> Option<Want<T>> {
        let (text, want) = value.as_ref()?;
        let at = self.key(key, text);
        if let Want::Problem(message) = want {
            self.problems.push((at, message.clone()));
        }
        Some(want.clone())
    }

    /// The line `p.toml:LINE:COLUMN: message` for a problem at `at`.
    fn expected(&self) -> Vec<String> {
        let mut problems = self.problems.clone();
        problems.sort_by_key(|(at, _)| *at);
        problems
            .iter()
            .map(|(at, message)| {
                let before = &self.text[..*at];
                let line = 1 + before.bytes().filter(|&b| b == b'\n').count();
                let start = before.rfind('\n').map_or(0, |i| i + 1);
                let column = 1 + before[start..].chars().count();
                format!("p.toml:{line}:{column}: {message}")
            })
            .collect()
    }
}

fn overflow_text(overflow: Overflow) -> String {
    format!("{:?}", overflow.as_str())
}

/// Write the models as `plugins.toml`, and check what `Config::parse` makes of it.
fn check(
    host: &HostModel,
    status: &Option<StatusModel>,
    plugins: &[PluginModel],
) -> Result<(), TestCaseError> {
    let mut doc = Doc::default();
    doc.line("[host]");
    let host_capacity = doc.written("queue_capacity", &host.queue_capacity);
    if let Some(overflow) = host.overflow {
        doc.key("overflow", &overflow_text(overflow));
    }
    let shutdown_timeout = doc.written("shutdown_timeout", &host.shutdown_timeout);
    let max_event_bytes = doc.written("max_event_bytes", &host.max_event_bytes);
    let mut status_wants = None;
    if let Some(status) = status {
        doc.line("[status]");
        let check_timeout = doc.written("check_timeout", &status.check_timeout);
        let max_connections = doc.written("max_connections", &status.max_connections);
        if let Some(code) = status.code {
            let at = doc.key("unavailable_status_code", &code.to_string());
            if !(100..=599).contains(&code) {
                doc.problems
                    .push((at, format!("invalid HTTP status code {code}")));
            }
        }
        status_wants = Some((check_timeout, max_connections));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut plugin_wants = Vec::new();
    for plugin in plugins {
        doc.line("[[plugin]]");
        let at = doc.key("name", &format!("{:?}", plugin.name));
        let line = 1 + doc.text[..at].bytes().filter(|&b| b == b'\n').count();
        let name = &plugin.name;
        let valid = !name.is_empty()
            && name.len() <= MAX_INSTANCE_NAME_BYTES
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            let reason = match name.len() {
                0 => "it must not be empty",
                n if n > MAX_INSTANCE_NAME_BYTES => "it must be at most 256 bytes long",
                _ => {
                    "use letters, digits, `-` and `_` (it appears in topics, URLs and metric labels)"
                }
            };
            doc.problems
                .push((at, format!("invalid plugin name `{name}`: {reason}")));
        } else if let Some(first) = seen.get(name.as_str()) {
            doc.problems.push((
                at,
                format!("duplicate plugin name `{name}` (first defined on line {first})"),
            ));
        } else {
            seen.insert(name, line);
        }
        let at = doc.key("library", &format!("{:?}", plugin.library));
        if plugin.library.trim().is_empty() {
            doc.problems
                .push((at, "`library` must not be empty".to_owned()));
        }
        if !plugin.subscribe.is_empty() || plugin.name.len() % 2 == 0 {
            doc.text.push_str("subscribe = [");
            for (i, pattern) in plugin.subscribe.iter().enumerate() {
                if i > 0 {
                    doc.text.push_str(", ");
                }
                let at = doc.text.len();
                doc.text.push_str(&format!("{pattern:?}"));
                if let Err(e) = Pattern::parse(pattern) {
                    doc.problems.push((at, e.to_string()));
                }
            }
            doc.text.push_str("]\n");
        }
        if let Some(enabled) = plugin.enabled {
            doc.key("enabled", &enabled.to_string());
        }
        if let Some(required) = plugin.required {
            doc.key("required", &required.to_string());
        }
        let capacity = doc.written("queue_capacity", &plugin.queue_capacity);
        if let Some(overflow) = plugin.overflow {
            doc.key("overflow", &overflow_text(overflow));
        }
        let max_restarts = doc.written("max_restarts", &plugin.max_restarts);
        let restart_window = doc.written("restart_window", &plugin.restart_window);
        let tick_interval = doc.written("tick_interval", &plugin.tick_interval);
        let handler_timeout = doc.written("handler_timeout", &plugin.handler_timeout);
        if let Some(sha) = &plugin.sha256 {
            let at = doc.key("sha256", &format!("{sha:?}"));
            if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                doc.problems
                    .push((at, "`sha256` must be 64 hexadecimal digits".to_owned()));
            }
        }
        if !plugin.config.is_empty() {
            doc.line("[plugin.config]");
            for (key, n, text) in &plugin.config {
                doc.key(
                    key,
                    &format!("{{ n = {n}, s = {text:?}, list = [{n}, {text:?}] }}"),
                );
            }
        }
        plugin_wants.push((
            capacity,
            max_restarts,
            restart_window,
            tick_interval,
            handler_timeout,
        ));
    }

    let parsed = Config::parse(Path::new("p.toml"), &doc.text);
    let expected = doc.expected();
    let config = match parsed {
        Err(e) => {
            let lines: Vec<String> = e.to_string().lines().map(str::to_owned).collect();
            prop_assert_eq!(lines, expected, "in\n{}", doc.text);
            match e {
                ConfigError::Several { errors } => prop_assert!(errors.len() > 1),
                ConfigError::Invalid { .. } => {}
                other => prop_assert!(false, "{:?}", other),
            }
            return Ok(());
        }
        Ok(config) => config,
    };
    prop_assert!(
        expected.is_empty(),
        "accepted, yet {:?} in\n{}",
        expected,
        doc.text
    );
    // Everything is valid: the config says exactly what the text does.
    let value =
        |want: Option<Want<u64>>, default: u64| want.and_then(|w| w.value()).unwrap_or(default);
    let duration = |want: Option<Want<Duration>>, default: Duration| {
        want.and_then(|w| w.value()).unwrap_or(default)
    };
    let capacity = value(host_capacity, 1024);
    prop_assert_eq!(config.host.queue_capacity.get() as u64, capacity);
    prop_assert_eq!(
        config.host.overflow,
        host.overflow.unwrap_or(Overflow::Block)
    );
    prop_assert_eq!(
        config.host.shutdown_timeout,
        duration(shutdown_timeout, Duration::from_secs(5))
    );
    prop_assert_eq!(
        config.host.max_event_bytes as u64,
        value(max_event_bytes, 64 << 20)
    );
    match (&config.status, status_wants) {
        (Some(got), Some((check_timeout, max_connections))) => {
            prop_assert_eq!(
                got.check_timeout,
                duration(check_timeout, Duration::from_secs(1))
            );
            prop_assert_eq!(got.max_connections as u64, value(max_connections, 1024));
            prop_assert_eq!(
                got.unavailable_status_code,
                status.as_ref().and_then(|s| s.code).unwrap_or(503)
            );
        }
        (None, None) => {}
        (got, want) => prop_assert!(false, "status {:?}, wanted {:?}", got, want),
    }
    prop_assert_eq!(config.plugins.len(), plugins.len());
    for ((got, plugin), wants) in config.plugins.iter().zip(plugins).zip(plugin_wants) {
        let (queue_capacity, max_restarts, restart_window, tick_interval, handler_timeout) = wants;
        prop_assert_eq!(&got.name, &plugin.name);
        prop_assert_eq!(&got.library, &plugin.library);
        let subscribe: Vec<&str> = got.subscribe.iter().map(Pattern::as_str).collect();
        prop_assert_eq!(
            subscribe,
            plugin
                .subscribe
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        );
        prop_assert_eq!(got.enabled, plugin.enabled.unwrap_or(true));
        prop_assert_eq!(got.required, plugin.required.unwrap_or(true));
        prop_assert_eq!(
            got.queue_capacity.get() as u64,
            value(queue_capacity, capacity)
        );
        prop_assert_eq!(
            got.overflow,
            plugin.overflow.or(host.overflow).unwrap_or(Overflow::Block)
        );
        prop_assert_eq!(u64::from(got.max_restarts), value(max_restarts, 5));
        prop_assert_eq!(
            got.restart_window,
            duration(restart_window, Duration::from_secs(60))
        );
        let off = |d: Duration| Some(d).filter(|d| !d.is_zero());
        prop_assert_eq!(
            got.tick_interval,
            off(duration(tick_interval, Duration::ZERO))
        );
        prop_assert_eq!(
            got.handler_timeout,
            off(duration(handler_timeout, Duration::ZERO))
        );
        prop_assert_eq!(
            got.sha256.clone(),
            plugin.sha256.as_ref().map(|s| s.to_ascii_lowercase())
        );
        let table: serde_json::Map<String, serde_json::Value> = plugin
            .config
            .iter()
            .map(|(k, n, s)| {
                (
                    k.clone(),
                    serde_json::json!({"n": n, "s": s, "list": [n, s]}),
                )
            })
            .collect();
        prop_assert_eq!(&got.config, &serde_json::Value::Object(table));
        prop_assert_eq!(got.isolation, Isolation::Thread);
        prop_assert_eq!(got.restart, Restart::OnFailure);
    }
    Ok(())
}

/// What the mangled text says, read as plain TOML: the keys the seed has.
fn says(text: &str, config: &Config) -> Result<(), TestCaseError> {
    let toml: toml::Table = toml::from_str(text)
        .map_err(|e| TestCaseError::fail(format!("the config parsed, plain TOML did not: {e}")))?;
    let get = |section: &str, key: &str| toml.get(section).and_then(|s| s.get(key)).cloned();
    let capacity = get("host", "queue_capacity").map_or(1024, |v| v.as_integer().unwrap() as usize);
    prop_assert_eq!(config.host.queue_capacity.get(), capacity);
    let shutdown =
        get("host", "shutdown_timeout").map(|v| HumanDuration::parse(v.as_str().unwrap()).unwrap());
    prop_assert_eq!(
        config.host.shutdown_timeout,
        shutdown.unwrap_or(Duration::from_secs(5))
    );
    prop_assert_eq!(config.status.is_some(), toml.contains_key("status"));
    if let Some(address) = get("status", "address") {
        prop_assert_eq!(
            config.status.as_ref().unwrap().address.to_string(),
            address.as_str().unwrap()
        );
    }
    let plugins = toml
        .get("plugin")
        .and_then(|p| p.as_array())
        .cloned()
        .unwrap_or_default();
    prop_assert_eq!(config.plugins.len(), plugins.len());
    for (got, table) in config.plugins.iter().zip(&plugins) {
        prop_assert_eq!(Some(got.name.as_str()), table["name"].as_str());
        prop_assert_eq!(Some(got.library.as_str()), table["library"].as_str());
        let subscribe: Vec<&str> = got.subscribe.iter().map(Pattern::as_str).collect();
        let written: Vec<&str> = table
            .get("subscribe")
            .and_then(|s| s.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        prop_assert_eq!(subscribe, written);
        let restarts = table
            .get("max_restarts")
            .map_or(5, |v| v.as_integer().unwrap() as u32);
        prop_assert_eq!(got.max_restarts, restarts);
        prop_assert_eq!(
            got.sha256.clone(),
            table
                .get("sha256")
                .map(|v| v.as_str().unwrap().to_ascii_lowercase())
        );
        let config = table
            .get("config")
            .cloned()
            .map_or(serde_json::json!({}), toml_to_json);
        prop_assert_eq!(&got.config, &config);
    }
    Ok(())
}

#[test]
fn the_seed_is_valid_and_says_what_it_says() {
    let config = Config::parse(Path::new("p.toml"), VALID).unwrap();
    assert_eq!(config.plugins[0].max_restarts, 3);
    assert_eq!(
        config.plugins[0].config,
        serde_json::json!({"k": [1, {"a": 2}]})
    );
    assert!(says(VALID, &config).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn any_text_is_parsed_or_refused_without_panicking(text in "\\PC{0,200}") {
        let _ = Config::parse(Path::new("p.toml"), &text);
    }

    #[test]
    fn a_generated_config_says_what_its_text_says_or_names_every_bad_value(
        host in host(),
        status in proptest::option::of(status()),
        plugins in proptest::collection::vec(plugin(), 0..4),
    ) {
        check(&host, &status, &plugins)?;
    }

    #[test]
    fn a_mangled_valid_config_says_what_it_says_or_points_inside_the_text(
        cut in 0..VALID.len(), insert in "[\\[\\]=\".a-z0-9{}\\n]{0,8}", keep in 0..VALID.len(),
    ) {
        let mut text = VALID.to_owned();
        text.insert_str(cut, &insert);
        text.truncate(keep.max(cut));
        match Config::parse(Path::new("p.toml"), &text) {
            Ok(config) => says(&text, &config)?,
            Err(e) => {
                let errors = match e {
                    ConfigError::Several { errors } => {
                        prop_assert!(errors.len() > 1);
                        errors
                    }
                    e => vec![e],
                };
                let lines: Vec<&str> = text.split('\n').collect();
                for e in errors {
                    let ConfigError::Invalid { path, line, column, message } = &e else {
                        return Err(TestCaseError::fail(format!("each problem is an Invalid: {e}")));
                    };
                    prop_assert_eq!(path, Path::new("p.toml"));
                    prop_assert!(!message.is_empty() && !message.contains('\n'), "one line per problem: {}", e);
                    prop_assert!(*line >= 1 && *line <= lines.len(), "line {} of {}: {}", line, lines.len(), e);
                    let length = lines[line - 1].chars().count();
                    prop_assert!(*column >= 1 && *column <= length + 1, "column {} of {}: {}", column, length, e);
                }
            }
        }
    }
}
