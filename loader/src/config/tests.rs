use super::*;

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(Path::new("/etc/plughost/plugins.toml"), text).map_err(|e| e.to_string())
}

#[test]
fn a_reload_names_each_changed_key_it_cannot_apply() {
    let old = parse("[host]\ncontrol_socket = \"a.sock\"\nmax_event_bytes = 10\n[status]\n[[plugin]]\nname = \"a\"\nlibrary = \"x\"\n").unwrap();
    let new = parse("[host]\ncontrol_socket = \"b.sock\"\nmax_event_bytes = 20\nshutdown_timeout = \"9s\"\n[status]\naddress = \"127.0.0.1:9\"\ncheck_timeout = \"3s\"\n[state]\nenabled = true\n[metrics]\nenabled = true\n[[plugin]]\nname = \"b\"\nlibrary = \"y\"\n").unwrap();
    assert_eq!(
        old.restart_needed(&new),
        [
            "[host] control_socket",
            "[status] address",
            "[status] check_timeout",
            "[state] enabled",
            "[metrics] enabled"
        ]
    );
    assert!(old.restart_needed(&old).is_empty());
    let without_status =
        parse("[host]\ncontrol_socket = \"a.sock\"\nmax_event_bytes = 10\n").unwrap();
    assert_eq!(old.restart_needed(&without_status), ["[status]"]);
    let mut kept = new.clone();
    kept.keep_start_settings(&old);
    assert!(old.restart_needed(&kept).is_empty());
    assert_eq!(kept.host.max_event_bytes, 20);
}

#[test]
fn a_full_config_reads_with_defaults_and_overrides() {
    let config = parse(
        r#"
[host]
plugin_dirs = ["target/release"]
queue_capacity = 64
overflow = "drop_newest"
shutdown_timeout = "250ms"

[[plugin]]
name = "audit"
library = "logger"
subscribe = ["orders.>", "plughost.plugin.*"]
queue_capacity = 4096
overflow = "drop_oldest"
[plugin.config]
path = "audit.log"
nested = { a = [1, 2] }

[[plugin]]
name = "count"
library = "./libcounter.so"
enabled = false
"#,
    )
    .unwrap();
    assert_eq!(
        config.host.plugin_dirs,
        vec![PathBuf::from("/etc/plughost/target/release")]
    );
    assert_eq!(config.host.shutdown_timeout, Duration::from_millis(250));
    let audit = &config.plugins[0];
    assert_eq!(audit.queue_capacity.get(), 4096);
    assert_eq!(audit.overflow, Overflow::DropOldest);
    assert_eq!(audit.subscribe.len(), 2);
    assert_eq!(
        audit.config,
        serde_json::json!({"path": "audit.log", "nested": {"a": [1, 2]}})
    );
    let count = &config.plugins[1];
    assert!(!count.enabled);
    assert_eq!(count.queue_capacity.get(), 64);
    assert_eq!(count.overflow, Overflow::DropNewest);
    assert_eq!(count.config, serde_json::json!({}));
}

#[test]
fn unknown_keys_name_line_and_column() {
    let err = parse("[host]\nqueue_capacity = 8\nqueue_capacty = 8\n").unwrap_err();
    assert!(
        err.starts_with("/etc/plughost/plugins.toml:3:1: unknown field `queue_capacty`"),
        "{err}"
    );
    let err = parse("[[plugin]]\nname = \"a\"\nlibrary = \"x\"\n  colour = 1\n").unwrap_err();
    assert!(
        err.starts_with("/etc/plughost/plugins.toml:4:3: unknown field `colour`"),
        "{err}"
    );
}

#[test]
fn malformed_toml_names_line_and_column() {
    let err = parse("[host]\nqueue_capacity = = 3\n").unwrap_err();
    assert!(
        err.starts_with("/etc/plughost/plugins.toml:2:18: "),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
    // Cut off after `=`: the parser gives no reason; the line says one.
    for text in [
        "[host]\nqueue_capacity =",
        "[[plugin]]\nname = \"a\"\nconfig = {b =",
    ] {
        let err = parse(text).unwrap_err();
        let line = text.lines().count();
        let column = text.lines().last().unwrap().len() + 1;
        assert_eq!(
            err,
            format!(
                "/etc/plughost/plugins.toml:{line}:{column}: the file ends where a value is expected"
            )
        );
    }
}

#[test]
fn bad_values_name_the_value() {
    let err = parse("[host]\nshutdown_timeout = \"5 parsecs\"\n").unwrap_err();
    assert!(
        err.starts_with("/etc/plughost/plugins.toml:2:20: invalid duration `5 parsecs`"),
        "{err}"
    );
    let err = parse("[host]\nqueue_capacity = 0\n").unwrap_err();
    assert_eq!(
        err,
        "/etc/plughost/plugins.toml:2:18: `queue_capacity` must be between 1 and 1048576 (it is 0)"
    );
    let err = parse("[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nsubscribe = [\"ok\", \"a.>.b\"]\n")
        .unwrap_err();
    assert!(
        err.starts_with("/etc/plughost/plugins.toml:4:20: invalid pattern `a.>.b`"),
        "{err}"
    );
    let long = "n".repeat(MAX_INSTANCE_NAME_BYTES + 1);
    let err = parse(&format!("[[plugin]]\nname = \"{long}\"\nlibrary = \"x\"\n")).unwrap_err();
    assert!(
        err.ends_with(": it must be at most 256 bytes long"),
        "{err}"
    );
    let longest = "n".repeat(MAX_INSTANCE_NAME_BYTES);
    assert!(
        parse(&format!(
            "[[plugin]]\nname = \"{longest}\"\nlibrary = \"x\"\n"
        ))
        .is_ok()
    );
    let err = parse("[host]\noverflow = \"spill\"\n").unwrap_err();
    assert!(
        err.starts_with("/etc/plughost/plugins.toml:2:12: unknown variant `spill`"),
        "{err}"
    );
}

#[test]
fn every_size_and_count_is_bounded_and_named_at_its_value() {
    let cases = [
        (
            "[host]\nqueue_capacity = 1000000000000\n",
            "2:18: `queue_capacity` must be between 1 and 1048576 (it is 1000000000000)",
        ),
        (
            "[host]\nmax_event_bytes = 0\n",
            "2:19: `max_event_bytes` must be between 1 and 1073741824 (it is 0)",
        ),
        (
            "[host]\nmax_event_bytes = 1073741825\n",
            "2:19: `max_event_bytes` must be between 1 and 1073741824 (it is 1073741825)",
        ),
        (
            "[host]\ncontrol_max_line_bytes = 10\n",
            "2:26: `control_max_line_bytes` must be between 1024 and 1073741824 (it is 10)",
        ),
        (
            "[host]\ncontrol_max_connections = 4097\n",
            "2:27: `control_max_connections` must be between 1 and 4096 (it is 4097)",
        ),
        (
            "[status]\ningest_max_bytes = 9223372036854775807\n",
            "2:20: `ingest_max_bytes` must be between 1 and 1073741824 (it is 9223372036854775807)",
        ),
        (
            "[status]\nmax_connections = 0\n",
            "2:19: `max_connections` must be between 1 and 65536 (it is 0)",
        ),
        (
            "[status]\nroute_max_pending = 5000\n",
            "2:21: `route_max_pending` must be between 1 and 4096 (it is 5000)",
        ),
        (
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nqueue_capacity = 2000000\n",
            "4:18: `queue_capacity` must be between 1 and 1048576 (it is 2000000)",
        ),
        (
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nmax_restarts = 4294967296\n",
            "4:16: `max_restarts` must be between 0 and 10000 (it is 4294967296)",
        ),
    ];
    for (text, expected) in cases {
        let err = parse(text).unwrap_err();
        assert_eq!(
            err,
            format!("/etc/plughost/plugins.toml:{expected}"),
            "{text}"
        );
    }
    // A negative number is not a size at all: the parser says so.
    let err = parse("[host]\nqueue_capacity = -1\n").unwrap_err();
    assert!(
        err.starts_with("/etc/plughost/plugins.toml:2:18: "),
        "{err}"
    );
}

#[test]
fn every_duration_is_bounded_and_named_at_its_value() {
    let huge = format!("{}s", 1u64 << 63);
    let cases = [
        format!("[host]\nshutdown_timeout = \"{huge}\"\n"),
        "[status]\ncheck_timeout = \"25h\"\n".to_owned(),
        "[status]\nroute_timeout = \"86401s\"\n".to_owned(),
        "[status]\nheader_timeout = \"1441m\"\n".to_owned(),
        "[status]\nidle_timeout = \"90000s\"\n".to_owned(),
        "[host]\ncontrol_idle_timeout = \"25h\"\n".to_owned(),
        "[state]\nping_interval = \"100h\"\n".to_owned(),
        format!("[[plugin]]\nname = \"a\"\nlibrary = \"x\"\ntick_interval = \"{huge}\"\n"),
        "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nhandler_timeout = \"48h\"\n".to_owned(),
        "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nrestart_window = \"86400001ms\"\n".to_owned(),
        "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nstart_timeout = \"2000m\"\n".to_owned(),
    ];
    for text in &cases {
        let err = parse(text).unwrap_err();
        let key = text.lines().last().unwrap().split(' ').next().unwrap();
        assert!(
            err.contains(&format!(": `{key}` must be at most 24h (it is ")),
            "{text}: {err}"
        );
    }
    // The bound itself is accepted.
    let config = parse("[host]\nshutdown_timeout = \"24h\"\n").unwrap();
    assert_eq!(config.host.shutdown_timeout, limits::MAX_DURATION);
}

#[test]
fn zero_means_off_now_or_is_refused_key_by_key() {
    let config = parse(
            "[host]\nshutdown_timeout = \"0s\"\n[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nhandler_timeout = \"0s\"\ntick_interval = \"0ms\"\n",
        )
        .unwrap();
    assert_eq!(config.host.shutdown_timeout, Duration::ZERO);
    assert_eq!(config.plugins[0].handler_timeout, None);
    assert_eq!(config.plugins[0].tick_interval, None);
    for (text, key) in [
        ("[status]\ncheck_timeout = \"0s\"\n", "check_timeout"),
        ("[status]\nidle_timeout = \"0ms\"\n", "idle_timeout"),
        (
            "[host]\ncontrol_idle_timeout = \"0s\"\n",
            "control_idle_timeout",
        ),
        ("[state]\nping_interval = \"0s\"\n", "ping_interval"),
        (
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nrestart_window = \"0s\"\n",
            "restart_window",
        ),
        (
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nstart_timeout = \"0s\"\n",
            "start_timeout",
        ),
    ] {
        let err = parse(text).unwrap_err();
        assert!(
            err.ends_with(&format!(": `{key}` must be more than zero")),
            "{err}"
        );
    }
}

#[test]
fn new_limits_have_their_documented_defaults() {
    let config = parse("[status]\n[[plugin]]\nname = \"a\"\nlibrary = \"x\"\n").unwrap();
    assert_eq!(config.host.max_event_bytes, 64 << 20);
    assert_eq!(config.host.control_max_line_bytes, 64 << 20);
    assert_eq!(config.host.control_max_connections, 64);
    assert_eq!(config.host.control_idle_timeout, Duration::from_secs(60));
    let status = config.status.unwrap();
    assert_eq!(status.header_timeout, Duration::from_secs(10));
    assert_eq!(status.idle_timeout, Duration::from_secs(60));
    assert_eq!(status.max_connections, 1024);
    assert_eq!(status.route_max_pending, 64);
    assert_eq!(status.ingest_max_bytes, 1 << 20);
    assert_eq!(config.plugins[0].start_timeout, Duration::from_secs(30));
    assert_eq!(config.plugins[0].max_restarts, 5);
    assert_eq!(config.plugins[0].queue_capacity.get(), 1024);
}

#[test]
fn the_number_of_instances_is_bounded_at_the_first_table_over() {
    let table = |i: usize| format!("[[plugin]]\nname = \"p{i}\"\nlibrary = \"x\"\n");
    let most: String = (0..limits::MAX_PLUGINS).map(table).collect();
    assert_eq!(parse(&most).unwrap().plugins.len(), limits::MAX_PLUGINS);
    let over = most + &table(limits::MAX_PLUGINS);
    let line = 3 * limits::MAX_PLUGINS + 2;
    assert_eq!(
        parse(&over).unwrap_err(),
        format!(
            "/etc/plughost/plugins.toml:{line}:8: at most 4096 [[plugin]] tables (each is a thread and a mailbox): this is one more"
        )
    );
}

#[test]
fn a_config_file_larger_than_16_mib_is_refused_before_it_is_parsed() {
    let dir = std::env::temp_dir().join(format!("plughost-config-size-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("plugins.toml");
    // Comments only: valid TOML of any size, so only the size refuses it.
    let line = format!("#{}\n", "x".repeat(1022));
    std::fs::write(&path, line.repeat(16 * 1024)).unwrap();
    Config::load(&path).unwrap();
    std::fs::write(&path, line.repeat(16 * 1024) + "#\n").unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        err,
        format!(
            "cannot read config {}: larger than 16 MiB, the most a config file may be",
            path.display()
        )
    );
}

#[test]
fn echo_defaults_to_false_and_reads_true() {
    let config = parse(
        "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\n[[plugin]]\nname = \"b\"\nlibrary = \"x\"\necho = true\n",
    )
    .unwrap();
    assert!(!config.plugins[0].echo);
    assert!(config.plugins[1].echo);
    let err = parse("[[plugin]]\nname = \"a\"\nlibrary = \"x\"\necho = 1\n").unwrap_err();
    assert!(
        err.starts_with("/etc/plughost/plugins.toml:4:8: ") && err.contains("bool"),
        "{err}"
    );
}

#[test]
fn required_defaults_to_true_and_reads_false() {
    let config = parse(
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\n[[plugin]]\nname = \"b\"\nlibrary = \"x\"\nrequired = false\n",
        )
        .unwrap();
    assert!(config.plugins[0].required);
    assert!(!config.plugins[1].required);
    let err = parse("[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nrequired = \"no\"\n").unwrap_err();
    assert!(
        err.starts_with("/etc/plughost/plugins.toml:4:12: "),
        "{err}"
    );
}

#[test]
fn names_as_shown_are_the_names_as_written() {
    for isolation in [Isolation::Thread, Isolation::Process] {
        let text = format!(
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nisolation = \"{}\"\n",
            isolation.as_str()
        );
        assert_eq!(parse(&text).unwrap().plugins[0].isolation, isolation);
    }
    for overflow in [Overflow::Block, Overflow::DropOldest, Overflow::DropNewest] {
        let text = format!("[host]\noverflow = \"{}\"\n", overflow.as_str());
        assert_eq!(parse(&text).unwrap().host.overflow, overflow);
    }
}

#[test]
fn what_a_library_must_satisfy_comes_from_its_plugin_table() {
    let pin = "ab".repeat(32);
    let config = parse(&format!(
            "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\nsha256 = \"{}\"\n\
             [[plugin]]\nname = \"b\"\nlibrary = \"x\"\nisolation = \"process\"\nallow_insecure_permissions = true\n",
            pin.to_uppercase()
        ))
        .unwrap();
    let a = crate::library::Trust::of(&config.plugins[0]);
    assert_eq!(a.sha256.as_deref(), Some(pin.as_str()));
    assert!(!a.allow_insecure_permissions && a.thread_isolation);
    let b = crate::library::Trust::of(&config.plugins[1]);
    assert_eq!(b.sha256, None);
    assert!(b.allow_insecure_permissions && !b.thread_isolation);
}

#[test]
fn relative_paths_are_relative_to_the_configs_directory() {
    let config = parse("").unwrap();
    assert_eq!(config.base_dir(), PathBuf::from("/etc/plughost"));
    let here = Config::parse(Path::new("plugins.toml"), "").unwrap();
    assert_eq!(here.base_dir(), std::env::current_dir().unwrap());
    assert_eq!(here.host.plugin_dirs, [std::env::current_dir().unwrap()]);
}

#[test]
fn a_reload_without_status_before_or_after_needs_no_restart_for_it() {
    let old = parse("[host]\nqueue_capacity = 8\n").unwrap();
    let new = parse("[host]\nqueue_capacity = 9\n").unwrap();
    assert!(old.restart_needed(&new).is_empty());
    let with = parse("[status]\n").unwrap();
    assert_eq!(with.restart_needed(&old), ["[status]"]);
}

#[test]
fn duplicate_names_point_at_both() {
    let err = parse(
        "[[plugin]]\nname = \"a\"\nlibrary = \"x\"\n\n[[plugin]]\nname = \"a\"\nlibrary = \"y\"\n",
    )
    .unwrap_err();
    assert_eq!(
        err,
        "/etc/plughost/plugins.toml:6:8: duplicate plugin name `a` (first defined on line 2)"
    );
}
