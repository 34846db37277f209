# scripts/stack-secure.sh - the secure variant of the local stack (scripts/stack up --secure),
# sourced by scripts/stack, never run alone. What it adds, all generated here, kept in
# $STACK_DIR (default $HOME/.cache/dmpflow-stack-secure, outside the repo), secrets mode 0600:
#   * a local CA (openssl) and one server certificate (SAN localhost, 127.0.0.1) for Kafka and
#     PostgreSQL; Kafka's controller listener is mutual TLS (principal = certificate CN);
#   * Kafka: clients on SASL_SSL with SCRAM-SHA-512 only, users created at format time, the
#     StandardAuthorizer with one principal per role and its ACLs (acl_table below), User:admin
#     super user for setup only;
#   * PostgreSQL: TLS only over TCP (hostssl + scram-sha-256), the superuser only over the unix
#     socket (peer), roles dmpflow_owner (migrations, CREATEDB), dmpflow_pipeline, dmpflow_reader
#     (their table rights come from the migration 0012_roles.sql);
#   * per-role settings: $STACK_DIR/roles/<role>.env (DMPFLOW_* variables: bootstrap, [kafka.client]
#     as DMPFLOW_KAFKA__*, database URL with sslmode=verify-full), read by the tests and by
#     `set -a; . FILE; set +a` before a dmpflow command. Passwords are random, never printed.
# shellcheck shell=bash

SECRETS_DIR=$STACK_DIR/secrets
PKI_DIR=$STACK_DIR/pki
ROLES_DIR=$STACK_DIR/roles
# Kafka principals, one per role. `tests` is the integration tests' own principal (topics and
# groups of the prefix `t`, what tests/kafka_pipeline.rs creates), never a deployment role.
KAFKA_USERS=(admin gateway normalize route store operator tests)
PG_ROLES=(dmpflow_owner dmpflow_pipeline dmpflow_reader)

# Never echoes the secret: it goes to a 0600 file once and is read back from there.
secret() { # name -> prints the password, created on first use
  local f=$SECRETS_DIR/$1
  if [[ ! -s $f ]]; then
    (umask 077; mkdir -p "$SECRETS_DIR"; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$f")
  fi
  cat "$f"
}

# The secure stack's own jar cache, seeded from the plain stack's when that one is complete
# (same pinned version): saves a Maven fetch; ensure_kafka_libs fetches otherwise.
secure_seed_kafka_libs() {
  local plain=$HOME/.cache/dmpflow-stack/kafka-libs
  [[ -f $KAFKA_LIBS/.complete ]] && return 0
  if [[ -f $plain/.complete && $(cat "$plain/.complete") == "$KAFKA_VERSION" ]]; then
    step "secure: copying the Kafka jars from $plain"
    rm -rf "$KAFKA_LIBS.tmp"
    cp -r "$plain" "$KAFKA_LIBS.tmp" && mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
  fi
}

# ---------------------------------------------------------------- PKI
secure_pki() {
  mkdir -p "$PKI_DIR"
  chmod 755 "$PKI_DIR"
  if [[ ! -s $PKI_DIR/ca.pem ]]; then
    step "secure: creating the local CA in $PKI_DIR"
    (umask 077; openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI_DIR/ca.key" 2>/dev/null)
    openssl req -x509 -new -key "$PKI_DIR/ca.key" -sha256 -days 825 -subj "/O=dmpflow dev/CN=dmpflow local CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$PKI_DIR/ca.pem" 2>/dev/null || die "openssl: creating the CA failed"
  fi
  if [[ ! -s $PKI_DIR/server.pem ]]; then
    step "secure: issuing the server certificate (localhost, 127.0.0.1)"
    (umask 077; openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI_DIR/server.key" 2>/dev/null)
    openssl req -new -key "$PKI_DIR/server.key" -subj "/O=dmpflow dev/CN=broker" -out "$PKI_DIR/server.csr" 2>/dev/null
    # The same certificate serves Kafka (server and, on the controller listener, client) and
    # PostgreSQL: hence both extended key usages.
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$PKI_DIR/server.ext"
    openssl x509 -req -in "$PKI_DIR/server.csr" -CA "$PKI_DIR/ca.pem" -CAkey "$PKI_DIR/ca.key" -CAcreateserial \
      -days 825 -sha256 -extfile "$PKI_DIR/server.ext" -out "$PKI_DIR/server.pem" 2>/dev/null \
      || die "openssl: issuing the server certificate failed"
    # Kafka's PEM keystore: the PKCS#8 key then the certificate chain, in one file.
    (umask 077; cat "$PKI_DIR/server.key" "$PKI_DIR/server.pem" "$PKI_DIR/ca.pem" >"$PKI_DIR/kafka-keystore.pem")
  fi
}

# ---------------------------------------------------------------- Kafka
# The client side of a principal, as Java properties (setup tools) and as DMPFLOW_KAFKA__*.
write_kafka_client_files() {
  local u
  (umask 077; mkdir -p "$ROLES_DIR")
  for u in "${KAFKA_USERS[@]}"; do
    (umask 077; cat >"$ROLES_DIR/kafka-$u.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$u" password="$(secret "kafka-$u")";
ssl.truststore.type=PEM
ssl.truststore.location=$PKI_DIR/ca.pem
EOF
    )
  done
}

# Appended to server.properties by write_node_config.
secure_node_properties() { # n i
  local n=$1 i=$2
  cat <<EOF

# ---- secure stack (scripts/stack-secure.sh) ----
listeners=SASL_SSL://127.0.0.1:$(broker_port "$n" "$i"),CONTROLLER://127.0.0.1:$(controller_port "$n" "$i")
advertised.listeners=SASL_SSL://127.0.0.1:$(broker_port "$n" "$i")
inter.broker.listener.name=SASL_SSL
# The controller listener is mutual TLS: SCRAM credentials live in the metadata the quorum
# itself serves, so controllers authenticate by certificate (CN=broker -> User:broker).
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
listener.name.controller.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^.*CN=([^,]+).*\$/\$1/,DEFAULT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(secret kafka-admin)";
ssl.keystore.type=PEM
ssl.keystore.location=$PKI_DIR/kafka-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$PKI_DIR/ca.pem
ssl.endpoint.identification.algorithm=https
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:broker
EOF
}

# SCRAM users written into the bootstrap metadata at format time: they exist before any
# client (the brokers themselves included) connects. StorageTool takes them only on its
# command line, so for the few seconds of the (one-time) format they are visible to local
# users in `ps`; on this single-user dev/CI machine that is accepted, a shared host would
# create the users afterwards with kafka-configs --command-config instead.
secure_format_args() {
  local u
  for u in "${KAFKA_USERS[@]}"; do
    printf '%s\n' --add-scram "SCRAM-SHA-512=[name=$u,password=$(secret "kafka-$u")]"
  done
}

# One line per ACL: principal operation resource-type pattern-type name.
# The default topic names (dmp.feed.*, dmp.documents, dmp.routed, dmp.quarantine, dmp.dlq,
# dmp.dlq.replayed) are matched by prefix so that a deployment may add a suffix per environment
# (the secure tests do: dmp.documents.<run>); groups are the default <group_prefix>=dmpflow.
acl_table() {
  cat <<'EOF'
gateway   Write           topic  prefixed dmp.feed.
gateway   Describe        topic  prefixed dmp.feed.
gateway   DescribeConfigs topic  prefixed dmp.feed.
normalize Read            topic  prefixed dmp.feed.
normalize Describe        topic  prefixed dmp.feed.
normalize Write           topic  prefixed dmp.documents
normalize Write           topic  prefixed dmp.dlq
normalize DescribeConfigs topic  prefixed dmp.documents
normalize DescribeConfigs topic  prefixed dmp.dlq
normalize Read            group  literal  dmpflow.normalize
route     Read            topic  prefixed dmp.documents
route     Describe        topic  prefixed dmp.documents
route     Write           topic  prefixed dmp.routed
route     Write           topic  prefixed dmp.quarantine
route     Write           topic  prefixed dmp.dlq
route     DescribeConfigs topic  prefixed dmp.routed
route     DescribeConfigs topic  prefixed dmp.quarantine
route     DescribeConfigs topic  prefixed dmp.dlq
route     Read            group  literal  dmpflow.route
store     Read            topic  prefixed dmp.routed
store     Read            topic  prefixed dmp.quarantine
store     Describe        topic  prefixed dmp.routed
store     Describe        topic  prefixed dmp.quarantine
store     Write           topic  prefixed dmp.dlq
store     DescribeConfigs topic  prefixed dmp.dlq
store     Read            group  literal  dmpflow.store
operator  Create          topic  prefixed dmp.
operator  Describe        topic  prefixed dmp.
operator  DescribeConfigs topic  prefixed dmp.
operator  Read            topic  prefixed dmp.dlq
operator  Write           topic  prefixed dmp.
operator  Read            group  literal  dmpflow.dlq-reader
operator  Read            group  prefixed dmpflow.normalize.replay-
operator  Read            group  prefixed dmpflow.route.replay-
operator  Read            group  prefixed dmpflow.store.replay-
operator  Read            topic  prefixed dmp.feed.
operator  Read            topic  prefixed dmp.documents
operator  Read            topic  prefixed dmp.routed
operator  Write           transactional-id literal dmpflow.dlq-replay
operator  Describe        transactional-id literal dmpflow.dlq-replay
tests     All             topic  prefixed t
tests     All             group  prefixed t
EOF
}

secure_apply_acls() { # n
  local n=$1 sum out
  # Re-applied only when the table changed (adding an existing ACL is a no-op anyway).
  sum=$(acl_table | sha256sum | cut -c1-16)
  if [[ $(cat "$(topo_dir "$n")/acls.applied" 2>/dev/null) == "$sum" ]]; then
    step "secure: ACLs already applied"
    return 0
  fi
  out=$(acl_table | java "${JAVA_TOOL_OPTS[@]}" -Dlog4j2.configurationFile="$STACK_DIR/conf/tools-log4j2.properties" \
    -cp "$KAFKA_LIBS/*" "$SCRIPT_DIR/StackAcls.java" "$(bootstrap_for "$n")" "$ROLES_DIR/kafka-admin.properties" 2>&1) \
    || { printf '%s\n' "$out" | tail -n 20 >&2; die "secure: adding the ACLs failed"; }
  step "secure: $out (one principal per role, see acl_table in scripts/stack-secure.sh)"
  echo "$sum" >"$(topo_dir "$n")/acls.applied"
}

# ---------------------------------------------------------------- PostgreSQL
secure_pg_conf() {
  # The server key must belong to postgres and be 0600 (PostgreSQL refuses anything looser).
  install -o postgres -g postgres -m 600 "$PKI_DIR/server.key" "$PG_ROOT/server.key"
  install -o postgres -g postgres -m 644 "$PKI_DIR/server.pem" "$PG_ROOT/server.pem"
  mkdir -p "$PG_ROOT/run"
  chown postgres:postgres "$PG_ROOT/run"
  as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null <<EOF

# ---- secure stack (scripts/stack-secure.sh) ----
ssl = on
ssl_cert_file = '$PG_ROOT/server.pem'
ssl_key_file = '$PG_ROOT/server.key'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
# The superuser connects over this socket only (peer), so TCP never needs a trust line.
unix_socket_directories = '$PG_ROOT/run'
EOF
  # Nothing in clear over TCP, nobody without a SCRAM password; postgres only locally (peer).
  as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null <<'EOF'
# Generated by scripts/stack-secure.sh
local   all   postgres                 peer
hostssl all   all       127.0.0.1/32   scram-sha-256
EOF
}

secure_pg_roles() {
  local r
  for r in "${PG_ROLES[@]}"; do
    if [[ -z $(pg_psql "SELECT 1 FROM pg_roles WHERE rolname = '$r'") ]]; then
      pg_psql "CREATE ROLE $r LOGIN"
      step "postgres: created role $r"
    fi
    # On psql's standard input, not its command line (which `ps` shows to every local user);
    # the statement is not logged (log_statement is off) and nothing reaches the terminal.
    printf "ALTER ROLE %s PASSWORD '%s';\n" "$r" "$(secret "pg-$r")" \
      | as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_ROOT/run" -p "$PG_PORT" -U postgres -d postgres -f - >/dev/null \
      || die "postgres: setting the password of role $r failed"
  done
  # The owner runs the migrations and, in tests, creates one database per test.
  pg_psql "ALTER ROLE dmpflow_owner CREATEDB"
  pg_psql "GRANT pg_signal_backend TO dmpflow_owner" 2>/dev/null || true
  if [[ -z $(pg_psql "SELECT 1 FROM pg_database WHERE datname = 'dmpflow'") ]]; then
    pg_psql "CREATE DATABASE dmpflow OWNER dmpflow_owner"
    step "postgres: created database dmpflow (owner dmpflow_owner)"
  fi
}

# Quoted where written: the & of the query would end a shell assignment.
pg_url_for() { # role [database]
  echo "postgres://$1:$(secret "pg-$1")@127.0.0.1:$PG_PORT/${2:-dmpflow}?sslmode=verify-full&sslrootcert=$PKI_DIR/ca.pem"
}

# ---------------------------------------------------------------- settings files
# roles/<kafka-principal>.env: what a dmpflow process of that role needs, in the environment's
# spelling. The database role each one gets: the stages the pipeline role, the operator the
# owner (its tools migrate), the gateway none.
secure_write_role_envs() { # n
  local n=$1 u db
  for u in "${KAFKA_USERS[@]}"; do
    case $u in
      normalize | route | store) db=dmpflow_pipeline ;;
      operator | admin | tests) db=dmpflow_owner ;;
      *) db="" ;;
    esac
    (umask 077; {
      echo "# Written by scripts/stack up --secure: the settings of the Kafka principal $u. Secrets: mode 0600."
      echo "DMPFLOW_KAFKA_BOOTSTRAP=$(bootstrap_for "$n")"
      echo "DMPFLOW_KAFKA__SECURITY_PROTOCOL=SASL_SSL"
      echo "DMPFLOW_KAFKA__SASL_MECHANISM=SCRAM-SHA-512"
      echo "DMPFLOW_KAFKA__SASL_USERNAME=$u"
      echo "DMPFLOW_KAFKA__SASL_PASSWORD=$(secret "kafka-$u")"
      echo "DMPFLOW_KAFKA__SSL_CA_LOCATION=$PKI_DIR/ca.pem"
      if [[ -n $db ]]; then echo "DMPFLOW_DATABASE_URL=\"$(pg_url_for "$db")\""; fi
    } >"$ROLES_DIR/$u.env")
  done
  # The consultation side has no Kafka principal of its own here: its database role only.
  (umask 077; {
    echo "# Written by scripts/stack up --secure: the FHIR server's (dmpflow serve) database role."
    echo "DMPFLOW_DATABASE_URL=\"$(pg_url_for dmpflow_reader)\""
  } >"$ROLES_DIR/reader.env")
}

# The stack env file of the secure stack: the `tests` principal's settings (what
# scripts/test-style runs of tests/kafka_pipeline.rs need) plus where the role files are.
secure_env_content() { # n
  local n=$1
  cat <<EOF
# Written by scripts/stack up --secure - settings of the local SECURE stack. Secrets: mode 0600.
DMPFLOW_STACK_SECURE=1
DMPFLOW_KAFKA_BOOTSTRAP=$(bootstrap_for "$n")
DMPFLOW_KAFKA_BROKERS=$n
DMPFLOW_KAFKA__SECURITY_PROTOCOL=SASL_SSL
DMPFLOW_KAFKA__SASL_MECHANISM=SCRAM-SHA-512
DMPFLOW_KAFKA__SASL_USERNAME=tests
DMPFLOW_KAFKA__SASL_PASSWORD=$(secret kafka-tests)
DMPFLOW_KAFKA__SSL_CA_LOCATION=$PKI_DIR/ca.pem
DMPFLOW_DATABASE_URL="$(pg_url_for dmpflow_owner)"
DMPFLOW_PG_PORT=$PG_PORT
DMPFLOW_STACK_DIR=$STACK_DIR
DMPFLOW_STACK_ROLES=$ROLES_DIR
DMPFLOW_STACK_CA=$PKI_DIR/ca.pem
KAFKA_LIBS=$KAFKA_LIBS
KAFKA_VERSION=$KAFKA_VERSION
EOF
}
