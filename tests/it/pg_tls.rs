//! TLS to PostgreSQL (`sslmode`, `sslrootcert` in `--database-url`) against a real server that
//! accepts TLS connections only (`hostssl` in its `pg_hba.conf`), with a test CA from rcgen.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::postgres::{PgCluster, PgOptions};
use crate::harness::running_as_root;

const BIN: &str = env!("CARGO_BIN_EXE_rtconfig");

/// A CA, a server certificate it signed for `localhost` only (so `127.0.0.1` does not match
/// it), and a second, unrelated CA.
struct Certs {
    dir: TempDir,
}

impl Certs {
    fn new() -> Certs {
        let ca = |name: &str| {
            let mut params =
                rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let key = rcgen::KeyPair::generate().expect("ca key");
            rcgen::CertifiedIssuer::self_signed(params, key).expect("ca")
        };
        let ca_ok = ca("rtconfig test CA");
        let ca_other = ca("some other CA");
        let server_key = rcgen::KeyPair::generate().expect("server key");
        let server = rcgen::CertificateParams::new(vec!["localhost".into()])
            .expect("server params")
            .signed_by(&server_key, &ca_ok)
            .expect("server cert");
        // As root the server runs as `postgres`: the files must be its own (key mode 0600).
        let dir = tempfile::Builder::new()
            .prefix("rtconfig-pgtls-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text);
        write("ca.pem", &ca_ok.pem()).expect("ca.pem");
        write("other-ca.pem", &ca_other.pem()).expect("other-ca.pem");
        write("server.crt", &server.pem()).expect("server.crt");
        write("server.key", &server_key.serialize_pem()).expect("server.key");
        write(
            "pg_hba.conf",
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostssl all all ::1/128 trust\n\
             hostnossl all all all reject\n",
        )
        .expect("pg_hba.conf");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod key");
        if running_as_root() {
            let st = Command::new("chown")
                .arg("-R")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(st.success(), "chown -R postgres {}", dir.path().display());
        }
        Certs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A cluster with `ssl=on` that refuses every connection without TLS.
fn tls_only_cluster(certs: &Certs) -> PgCluster {
    let p = |n: &str| certs.path(n).display().to_string();
    PgCluster::start_with(PgOptions {
        settings: vec![
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), p("server.crt")),
            ("ssl_key_file".into(), p("server.key")),
            ("hba_file".into(), p("pg_hba.conf")),
        ],
        ..Default::default()
    })
}

fn url(host: &str, port: u16, db: &str, query: &str) -> String {
    format!("postgres://postgres@{host}:{port}/{db}?{query}")
}

fn migrate(database_url: &str) -> Output {
    Command::new(BIN)
        .args(["admin", "migrate", "--log-format", "json"])
        .env("RTCONFIG_DATABASE_URL", database_url)
        .stdin(Stdio::null())
        .output()
        .expect("rtconfig admin migrate runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn root(path: &Path) -> String {
    format!("sslrootcert={}", path.display())
}

#[test]
fn pg_tls_sslmodes_check_the_server_certificate_as_asked() {
    let certs = Certs::new();
    let pg = tls_only_cluster(&certs);
    let db = pg.create_database();
    let port = pg.port();
    let ca = root(&certs.path("ca.pem"));
    let other = root(&certs.path("other-ca.pem"));
    // (host, query, succeeds, what stderr must say when it fails)
    let cases: Vec<(&str, String, bool, &str)> = vec![
        // The server refuses plain connections: a success below is a TLS connection.
        (
            "127.0.0.1",
            "sslmode=disable".into(),
            false,
            "no encryption",
        ),
        ("127.0.0.1", "sslmode=prefer".into(), true, ""),
        ("127.0.0.1", "sslmode=require".into(), true, ""),
        // verify-ca checks the chain, not the name (the certificate names only localhost).
        ("127.0.0.1", format!("sslmode=verify-ca&{ca}"), true, ""),
        (
            "127.0.0.1",
            format!("sslmode=verify-ca&{other}"),
            false,
            "UnknownIssuer",
        ),
        // libpq: require with a root certificate checks the chain.
        (
            "127.0.0.1",
            format!("sslmode=require&{other}"),
            false,
            "UnknownIssuer",
        ),
        ("localhost", format!("sslmode=verify-full&{ca}"), true, ""),
        (
            "127.0.0.1",
            format!("sslmode=verify-full&{ca}"),
            false,
            "not valid for name",
        ),
        (
            "localhost",
            format!("sslmode=verify-full&{other}"),
            false,
            "UnknownIssuer",
        ),
        // No sslrootcert: Mozilla's roots, which do not hold the test CA.
        (
            "localhost",
            "sslmode=verify-full".into(),
            false,
            "UnknownIssuer",
        ),
    ];
    for (host, query, ok, why) in cases {
        let out = migrate(&url(host, port, &db, &query));
        let err = stderr(&out);
        assert_eq!(out.status.success(), ok, "{host} {query}: {err}");
        if !ok {
            assert!(err.contains(why), "{host} {query}: want {why:?} in: {err}");
            assert!(
                !err.contains("postgres://"),
                "the URL is never logged: {err}"
            );
        }
    }
    // A missing CA file is a settings error (exit 64) naming the file.
    let out = migrate(&url(
        "localhost",
        port,
        &db,
        &format!("sslmode=verify-full&{}", root(&certs.path("nope.pem"))),
    ));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("nope.pem"), "{err}");
}

#[test]
fn pg_tls_the_admin_refuses_to_start_when_verify_full_fails() {
    let certs = Certs::new();
    let pg = tls_only_cluster(&certs);
    let db = pg.create_database();
    let bad = url(
        "127.0.0.1",
        pg.port(),
        &db,
        &format!("sslmode=verify-full&{}", root(&certs.path("ca.pem"))),
    );
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(["admin", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("RTCONFIG_DATABASE_URL", &bad)
        .env("RTCONFIG_REDIS_URL", "redis://127.0.0.1:6379")
        .env("RTCONFIG_ADMIN_TOKEN", "pg-tls-test-token-0123456789")
        .env("RTCONFIG_CLUSTER_ID", "pg-tls-test")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rtconfig admin starts");
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the admin kept running although verify-full failed");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().expect("output");
    let err = stderr(&out);
    assert!(!status.success(), "{err}");
    assert!(err.contains("not valid for name"), "{err}");
    assert!(
        !err.contains("postgres://"),
        "the URL is never logged: {err}"
    );
}
