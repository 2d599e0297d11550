"""The commented example config.xml that ``netmetrix config init`` writes.

It must pass ``netmetrix config check`` as written (a test checks that).  The
comments teach the file; the values are the defaults, spelled out.
"""

from netmetrix.configxml import SMTP, SSH, Alert, ConfigXml, Host, render

_COMMENTS = {
    "script": (
        "File name of the probe on every host; beside it, this store's key and state\n"
        "files <script>.<collector_id>.key and .state (`netmetrix db info` shows the id)."
    ),
    "concurrency": "Hosts worked on at once.",
    "database": (
        "A path (relative to this file) for SQLite, or a SQLAlchemy URL such as\n"
        "postgresql://netmetrix@db.example.com/netmetrix.  Never put a password in\n"
        "the URL: PostgreSQL reads it from PGPASSWORD or ~/.pgpass."
    ),
    "ssh": (
        "known_hosts is ours (relative to this file); ~/.ssh/known_hosts is read too.\n"
        "host_key_policy: strict (unknown keys refused) or accept-new (recorded).\n"
        "Timeouts are seconds, or with a unit: 30s, 2m."
    ),
    "smtp": (
        "Where alert mail goes out.  security: none, starttls or tls.  With a user,\n"
        "the password is read from the environment variable named by password_env.\n"
        "timeout: for each reply of the server; deadline: for a whole delivery pass\n"
        "(mail not tried by then waits for the next run)."
    ),
    "security": (
        "preferred: AES-256-GCM where the host has `cryptography`, HMAC-SHA256 otherwise;\n"
        "required: refuse hosts that cannot encrypt."
    ),
    "retention": "execute and watch delete samples older than this many days.",
    "watch": "netmetrix watch samples every host this often (1s to 1h).",
    "checks": (
        "Custom checks (README, Custom checks): Nagios plugins that the probe runs on\n"
        "the hosts, without a shell, and node_exporter textfiles it reads there; run\n"
        "upload after a change.  Take the comment marks away to use these:\n"
        "<checks>\n"
        '  <check name="disk" command="/usr/lib/nagios/plugins/check_disk -w 20% -c 10% -p /"\n'
        '         timeout="10s" every="5m" hosts="web* db*"/>\n'
        '  <textfile dir="/var/lib/node_exporter/textfile"/>\n'
        "</checks>\n"
        'and alert on a check with <alert check="disk" email="ops@example.com"/>.'
    ),
    "alerts": (
        "Rules: metric, op (> >= < <= == !=), limit, email (comma-separated).\n"
        'Optional: labels="mount=/", hosts="db*,web1", for="3" (samples in a row),\n'
        'repeat="4h" (re-send while firing), resolved="false", severity\n'
        "(info, warning, critical), clear (the limit to get back past)."
    ),
}

_HOSTS_COMMENT = (
    "Only name is required.  Whatever is not given here comes from\n"
    "~/.ssh/config (HostName, Port, User, IdentityFile, ProxyJump), then SSH\n"
    "defaults.  directory holds the probe: the default, ~/.cache/netmetrix, is in\n"
    "the login user's home, made 0700 by upload; python runs it."
)

EXAMPLE = ConfigXml(
    comment=(
        "netmetrix configuration: check it with `netmetrix config check`,\n"
        "see what it resolves to with `netmetrix config show`."
    ),
    comments=_COMMENTS,
    script="client.py",
    concurrency=50,
    database="netmetrix.db",
    ssh=SSH(
        known_hosts="known_hosts", host_key_policy="strict", connect_timeout=10, command_timeout=30
    ),
    smtp=SMTP(
        host="localhost",
        port=25,
        security="none",
        sender="netmetrix@localhost",
        user="",
        password_env="SMTP_PASSWORD",  # noqa: S106 -- the variable's name, never the secret
        timeout="10s",
        deadline="30s",
    ),
    encryption="preferred",
    retention_days=30,
    watch_interval="10s",
    hosts=(
        Host(
            name="web1",
            address="192.0.2.10",
            port=22,
            user="monitor",
            key="~/.ssh/netmetrix",
            directory="~/.cache/netmetrix",
            python="python3",
            comment=_HOSTS_COMMENT,
        ),
        Host(name="db1"),
    ),
    digest_over=10,
    alerts=(
        Alert(metric="cpu_percent", op=">", limit=90, for_count=3, email="ops@example.com"),
        Alert(
            metric="disk_percent",
            labels="mount=/",
            op=">=",
            limit=90,
            clear=85,
            repeat="4h",
            severity="critical",
            email="ops@example.com",
        ),
        Alert(metric="up", op="==", limit=0, hosts="db*", email="ops@example.com"),
    ),
)

EXAMPLE_CONFIG = render(EXAMPLE)
