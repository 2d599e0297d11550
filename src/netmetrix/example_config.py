"""The commented example config.xml that ``netmetrix config init`` writes.

It must pass ``netmetrix config check`` as written (a test checks that).
"""

EXAMPLE_CONFIG = """\
<?xml version="1.0" encoding="UTF-8"?>
<!-- netmetrix configuration: check it with `netmetrix config check`,
     see what it resolves to with `netmetrix config show`. -->
<netmetrix>
  <!-- File name of the probe on every host; beside it, this store's key and state
       files <script>.<collector_id>.key and .state (`netmetrix db info` shows the id). -->
  <script>client.py</script>

  <!-- Hosts worked on at once. -->
  <concurrency>50</concurrency>

  <!-- A path (relative to this file) for SQLite, or a SQLAlchemy URL such as
       postgresql://netmetrix@db.example.com/netmetrix.  Never put a password in
       the URL: PostgreSQL reads it from PGPASSWORD or ~/.pgpass. -->
  <database>netmetrix.db</database>

  <!-- known_hosts is ours (relative to this file); ~/.ssh/known_hosts is read too.
       host_key_policy: strict (unknown keys refused) or accept-new (recorded).
       Timeouts are seconds, or with a unit: 30s, 2m. -->
  <ssh known_hosts="known_hosts" host_key_policy="strict"
       connect_timeout="10" command_timeout="30"/>

  <!-- Where alert mail goes out.  security: none, starttls or tls.  With a user,
       the password is read from the environment variable named by password_env.
       timeout: for each reply of the server; deadline: for a whole delivery pass
       (mail not tried by then waits for the next run). -->
  <smtp host="localhost" port="25" security="none" sender="netmetrix@localhost"
        user="" password_env="SMTP_PASSWORD" timeout="10s" deadline="30s"/>

  <!-- preferred: AES-256-GCM where the host has `cryptography`, HMAC-SHA256 otherwise;
       required: refuse hosts that cannot encrypt. -->
  <security encryption="preferred"/>

  <!-- execute deletes samples older than this many days. -->
  <retention days="30"/>

  <hosts>
    <!-- Only name is required.  Whatever is not given here comes from
         ~/.ssh/config (HostName, Port, User, IdentityFile, ProxyJump), then SSH
         defaults.  directory holds the probe: the default, ~/.cache/netmetrix, is in
         the login user's home, made 0700 by upload; python runs it. -->
    <host name="web1" address="192.0.2.10" port="22" user="monitor"
          key="~/.ssh/netmetrix" directory="~/.cache/netmetrix" python="python3"/>
    <host name="db1"/>
  </hosts>

  <!-- Rules: metric, op (> >= < <= == !=), limit, email (comma-separated).
       Optional: labels="mount=/", hosts="db*,web1", for="3" (samples in a row),
       repeat="4h" (re-send while firing), resolved="false", severity
       (info, warning, critical), clear (the limit to get back past). -->
  <alerts digest_over="10">
    <alert metric="cpu_percent" op="&gt;" limit="90" for="3" email="ops@example.com"/>
    <alert metric="disk_percent" labels="mount=/" op="&gt;=" limit="90" clear="85"
           repeat="4h" severity="critical" email="ops@example.com"/>
    <alert metric="up" op="==" limit="0" hosts="db*" email="ops@example.com"/>
  </alerts>
</netmetrix>
"""
