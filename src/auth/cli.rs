//! `rtconfig user …` and `rtconfig token …`: manage admin users and API tokens directly in the
//! store (the data dir or PostgreSQL), for bootstrapping and recovery. Every action is audited
//! with actor `cli`.
//!
//! Passwords come from stdin only (`--password-stdin`), never from a flag (flags show in `ps`
//! and shell history). With `--data-dir` the admin must be stopped: the store is locked while it
//! runs (use the API then). With `--database-url` the migrations run first.
//!
//! Exit codes: 0 done; 64 the operator must fix the command (a bad role, a weak or empty
//! password, no store flag, a malformed URL); 1 a failure at run time (an unknown user or token,
//! a name taken, the store unavailable or locked).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde_json::json;

use super::audit::{record_local, Action};
use super::embedded::EmbeddedAuthStore;
use super::memory;
use super::password::{Hasher, PasswordPolicy};
use super::postgres::PgAuthStore;
use super::role::{Grant, Grants};
use super::secrets;
use super::store::{ApiToken, AuthStore, AuthStoreError, LoginFailures, NewUser, User, UserUpdate};
use super::throttle::{decide, ThrottlePolicy};
use crate::cli::LedgerArgs;
use crate::ledger::postgres::PgSettings;
use crate::telemetry::Chain;

/// `rtconfig user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a local user; the password is read from stdin (`--password-stdin`).
    Add(UserAdd),
    /// Set a user's password (read from stdin); ends all of the user's sessions.
    Passwd(UserPasswd),
    /// Disable a user: ends their sessions and suspends their API tokens.
    Disable(UserTarget),
    /// Enable a disabled user again (and clear their failed sign-ins: an unlock).
    Enable(UserTarget),
    /// List the users: name, roles, disabled, locked, MFA, SSO issuer.
    List(StoreOnly),
    /// Add grants (`ROLE` or `ROLE:NAMESPACE`) to a user; ends their sessions.
    Grant(UserGrants),
    /// Remove grants from a user; ends their sessions.
    Revoke(UserGrants),
}

/// `rtconfig token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token; prints the token alone on stdout (shown once).
    Create(TokenCreate),
    /// List the API tokens (never their values).
    List(StoreOnly),
    /// Revoke an API token by id; it stops working at the next request.
    Revoke(TokenRevoke),
}

#[derive(Debug, Args)]
pub struct StoreOnly {
    #[command(flatten)]
    pub store: LedgerArgs,
}

#[derive(Debug, Args)]
pub struct UserAdd {
    /// The user name (unique, case-sensitive).
    pub name: String,
    /// A grant: viewer, editor or admin, globally or for one namespace (`editor:payments`).
    /// Repeatable.
    #[arg(long = "role", value_name = "ROLE[:NAMESPACE]", required = true, num_args = 1..)]
    pub roles: Vec<Grant>,
    /// Read the password from stdin (the only way to give one).
    #[arg(long, required = true)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub store: LedgerArgs,
}

#[derive(Debug, Args)]
pub struct UserPasswd {
    pub name: String,
    /// Read the new password from stdin (the only way to give one).
    #[arg(long, required = true)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub store: LedgerArgs,
}

#[derive(Debug, Args)]
pub struct UserTarget {
    pub name: String,
    #[command(flatten)]
    pub store: LedgerArgs,
}

#[derive(Debug, Args)]
pub struct UserGrants {
    pub name: String,
    /// Grants: `ROLE` or `ROLE:NAMESPACE` (viewer, editor, admin).
    #[arg(value_name = "ROLE[:NAMESPACE]", required = true, num_args = 1..)]
    pub roles: Vec<Grant>,
    #[command(flatten)]
    pub store: LedgerArgs,
}

#[derive(Debug, Args)]
pub struct TokenCreate {
    /// The token's name (unique among tokens not revoked).
    pub name: String,
    /// The token's scope: `ROLE` or `ROLE:NAMESPACE`. Repeatable.
    #[arg(long = "role", value_name = "ROLE[:NAMESPACE]", required = true, num_args = 1..)]
    pub roles: Vec<Grant>,
    /// Seconds until the token expires (default: never).
    #[arg(long, value_name = "SECS")]
    pub expires_in: Option<u64>,
    #[command(flatten)]
    pub store: LedgerArgs,
}

#[derive(Debug, Args)]
pub struct TokenRevoke {
    /// The token's id (`tok_…`, from `rtconfig token list`).
    pub id: String,
    #[command(flatten)]
    pub store: LedgerArgs,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command must be fixed (exit 64).
    #[error("{0}")]
    Usage(String),
    /// Something failed at run time (exit 1).
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] AuthStoreError),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 64,
            CliError::Failed(_) | CliError::Store(_) => 1,
        }
    }
}

type Outcome = Result<(), CliError>;

/// Which store the flags name.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreChoice {
    DataDir(PathBuf),
    Database(String),
}

/// Exactly one of `--data-dir` and `--database-url`.
pub fn store_choice(args: &LedgerArgs) -> Result<StoreChoice, CliError> {
    let database_url = crate::settings::read_secret(
        crate::settings::DATABASE_URL,
        args.database_url.clone(),
        args.database_url_file.as_deref(),
    )
    .map_err(CliError::Usage)?;
    match (&database_url, &args.data_dir) {
        (Some(url), None) => match crate::settings::database_url_problem(url) {
            Some(problem) => Err(CliError::Usage(format!("--database-url: {problem}"))),
            None => Ok(StoreChoice::Database(url.clone())),
        },
        (None, Some(dir)) => Ok(StoreChoice::DataDir(dir.clone())),
        (Some(_), Some(_)) => Err(CliError::Usage(
            "give --database-url or --data-dir, not both".into(),
        )),
        (None, None) => Err(CliError::Usage(
            "say where the users are: --data-dir DIR (the admin's embedded store) or --database-url URL (PostgreSQL)".into(),
        )),
    }
}

/// Opens the store the flags name (PostgreSQL: migrated first).
pub async fn open_store(choice: &StoreChoice) -> Result<Arc<dyn AuthStore>, CliError> {
    Ok(match choice {
        StoreChoice::DataDir(dir) => Arc::new(EmbeddedAuthStore::open(dir)?),
        StoreChoice::Database(url) => Arc::new(PgAuthStore::open(&PgSettings::new(url)).await?),
    })
}

/// Runs `rtconfig user …`.
pub async fn user(command: UserCommand) -> ExitCode {
    let (store_args, stdin_password) = match &command {
        UserCommand::Add(a) => (&a.store, true),
        UserCommand::Passwd(a) => (&a.store, true),
        UserCommand::Disable(a) | UserCommand::Enable(a) => (&a.store, false),
        UserCommand::List(a) => (&a.store, false),
        UserCommand::Grant(a) | UserCommand::Revoke(a) => (&a.store, false),
    };
    let choice = store_choice(store_args);
    let outcome = async {
        let choice = choice?;
        // The password is read (and checked) before the store is touched.
        let password = if stdin_password {
            Some(read_password(std::io::stdin().lock())?)
        } else {
            None
        };
        let store = open_store(&choice).await?;
        run_user(&*store, command, password, &mut std::io::stdout()).await
    }
    .await;
    finish("user", outcome)
}

/// Runs `rtconfig token …`.
pub async fn token(command: TokenCommand) -> ExitCode {
    let store_args = match &command {
        TokenCommand::Create(a) => &a.store,
        TokenCommand::List(a) => &a.store,
        TokenCommand::Revoke(a) => &a.store,
    };
    let choice = store_choice(store_args);
    let outcome = async {
        let choice = choice?;
        let store = open_store(&choice).await?;
        run_token(&*store, command, &mut std::io::stdout()).await
    }
    .await;
    finish("token", outcome)
}

fn finish(command: &str, outcome: Outcome) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtconfig {command}: {}", Chain(&e));
            ExitCode::from(e.exit_code())
        }
    }
}

/// The password on stdin: everything up to the end, without one trailing line break.
pub fn read_password(mut input: impl Read) -> Result<String, CliError> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .map_err(|e| CliError::Usage(format!("cannot read the password from stdin: {e}")))?;
    let password = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text)
        .to_owned();
    if password.is_empty() {
        return Err(CliError::Usage(
            "no password on stdin: pipe it in, e.g. `printf '%s' \"$PASSWORD\" | rtconfig user add …`"
                .into(),
        ));
    }
    Ok(password)
}

/// Checks a new password against the policy and hashes it (argon2id, on the blocking pool).
pub async fn hash_new_password(password: String, username: &str) -> Result<String, CliError> {
    PasswordPolicy::check(&password, username)
        .map_err(|p| CliError::Usage(format!("weak password: {p}")))?;
    tokio::task::spawn_blocking(move || Hasher::hash_blocking(&password))
        .await
        .map_err(|e| CliError::Failed(format!("the password hashing task failed: {e}")))?
        .map_err(|e| CliError::Failed(format!("cannot hash the password: {e}")))
}

/// Records what the CLI did (actor `cli`) in the audit log and the structured log.
async fn audit(
    store: &dyn AuthStore,
    action: Action,
    target: &str,
    details: serde_json::Value,
) -> Outcome {
    record_local(store, "cli", action, target, details).await?;
    Ok(())
}

async fn need_user(store: &dyn AuthStore, name: &str) -> Result<User, CliError> {
    store.user_by_name(name).await?.ok_or_else(|| {
        CliError::Failed(format!("no user named {name:?} (see `rtconfig user list`)"))
    })
}

fn grant_list(grants: &Grants) -> Vec<String> {
    grants.iter().map(ToString::to_string).collect()
}

/// The user actions, on an open store (`password`: read from stdin for `add` and `passwd`).
pub async fn run_user(
    store: &dyn AuthStore,
    command: UserCommand,
    password: Option<String>,
    out: &mut dyn std::io::Write,
) -> Outcome {
    let write = |out: &mut dyn std::io::Write, text: String| {
        writeln!(out, "{text}")
            .map_err(|e| CliError::Failed(format!("cannot write to stdout: {e}")))
    };
    match command {
        UserCommand::Add(a) => {
            let password =
                password.ok_or_else(|| CliError::Usage("pass --password-stdin".into()))?;
            if store.user_by_name(&a.name).await?.is_some() {
                return Err(AuthStoreError::UserExists(a.name).into());
            }
            let hash = hash_new_password(password, &a.name).await?;
            let grants = Grants::new(a.roles);
            let user = store
                .create_user(NewUser {
                    username: a.name.clone(),
                    grants: grants.clone(),
                    password_hash: Some(hash),
                    oidc: None,
                })
                .await?;
            audit(
                store,
                Action::UserCreated,
                &user.username,
                json!({"roles": grant_list(&grants)}),
            )
            .await?;
            write(
                out,
                format!(
                    "user {} created ({})",
                    user.username,
                    grant_list(&grants).join(", ")
                ),
            )
        }
        UserCommand::Passwd(a) => {
            let password =
                password.ok_or_else(|| CliError::Usage("pass --password-stdin".into()))?;
            let user = need_user(store, &a.name).await?;
            if user.oidc.is_some() {
                return Err(CliError::Usage(format!(
                    "{} signs in with SSO: its password is the identity provider's",
                    a.name
                )));
            }
            let hash = hash_new_password(password, &a.name).await?;
            store
                .update_user(&user.id, UserUpdate::Password(hash))
                .await?;
            audit(store, Action::PasswordReset, &a.name, json!({})).await?;
            write(
                out,
                format!("password of {} changed; their sessions were ended", a.name),
            )
        }
        UserCommand::Disable(a) => {
            let user = need_user(store, &a.name).await?;
            store
                .update_user(&user.id, UserUpdate::Disabled(true))
                .await?;
            audit(store, Action::UserDisabled, &a.name, json!({})).await?;
            write(
                out,
                format!(
                    "user {} disabled; their sessions were ended and their tokens suspended",
                    a.name
                ),
            )
        }
        UserCommand::Enable(a) => {
            let user = need_user(store, &a.name).await?;
            store
                .update_user(&user.id, UserUpdate::Disabled(false))
                .await?;
            store.clear_login_failures(&user.id).await?;
            audit(store, Action::UserEnabled, &a.name, json!({})).await?;
            write(out, format!("user {} enabled", a.name))
        }
        UserCommand::List(_) => {
            let users = store.users().await?;
            let text = user_table(&users, Utc::now());
            write(out, text.trim_end().to_owned())
        }
        UserCommand::Grant(a) => change_grants(store, a, true, out).await,
        UserCommand::Revoke(a) => change_grants(store, a, false, out).await,
    }
}

async fn change_grants(
    store: &dyn AuthStore,
    a: UserGrants,
    add: bool,
    out: &mut dyn std::io::Write,
) -> Outcome {
    let user = need_user(store, &a.name).await?;
    let before = user.grants.clone();
    let after = if add {
        Grants::new(
            before
                .iter()
                .cloned()
                .chain(a.roles.iter().cloned())
                .collect(),
        )
    } else {
        Grants::new(
            before
                .iter()
                .filter(|g| !a.roles.contains(g))
                .cloned()
                .collect(),
        )
    };
    if !add {
        for g in a.roles.iter().filter(|g| !before.0.contains(g)) {
            eprintln!("rtconfig user revoke: {} has no grant {g}", a.name);
        }
    }
    if after == before {
        writeln!(out, "{}: roles unchanged ({})", a.name, shown(&before))
            .map_err(|e| CliError::Failed(format!("cannot write to stdout: {e}")))?;
        return Ok(());
    }
    store
        .update_user(&user.id, UserUpdate::Grants(after.clone()))
        .await?;
    audit(
        store,
        Action::RolesChanged,
        &a.name,
        json!({"before": grant_list(&before), "after": grant_list(&after)}),
    )
    .await?;
    writeln!(
        out,
        "{}: roles now {}; their sessions were ended",
        a.name,
        shown(&after)
    )
    .map_err(|e| CliError::Failed(format!("cannot write to stdout: {e}")))
}

fn shown(grants: &Grants) -> String {
    if grants.0.is_empty() {
        "none".into()
    } else {
        grant_list(grants).join(", ")
    }
}

/// Whether the login throttle refuses the account at `now`.
pub fn locked(failures: &LoginFailures, now: DateTime<Utc>) -> bool {
    !decide(failures, now, &ThrottlePolicy::PER_ACCOUNT).is_allowed()
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = *w));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// `rtconfig user list`: name, roles, disabled, locked, MFA, SSO issuer.
pub fn user_table(users: &[User], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                u.username.clone(),
                shown(&u.grants),
                yes_no(u.disabled),
                yes_no(locked(&u.failures, now)),
                match &u.totp {
                    Some(t) if t.confirmed => "totp".to_owned(),
                    Some(_) => "enrolling".to_owned(),
                    None => "-".to_owned(),
                },
                u.oidc.as_ref().map_or("-".to_owned(), |l| l.issuer.clone()),
            ]
        })
        .collect();
    table(
        &["NAME", "ROLES", "DISABLED", "LOCKED", "MFA", "SSO"],
        &rows,
    )
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or("-".to_owned(), |t| {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    })
}

/// `rtconfig token list`.
pub fn token_table(tokens: &[ApiToken]) -> String {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.name.clone(),
                shown(&t.grants),
                when(Some(t.created_at)),
                when(t.expires_at),
                when(t.last_used_at),
                when(t.revoked_at),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "ROLES",
            "CREATED",
            "EXPIRES",
            "LAST USED",
            "REVOKED",
        ],
        &rows,
    )
}

/// The longest `--expires-in`: 100 years.
pub const MAX_EXPIRES_IN: u64 = 100 * 365 * 86_400;

/// A new API token of `grants` (made by the CLI: no creator, so its scope alone counts).
/// Returns the token to show once and what the store keeps.
pub fn new_token(name: &str, grants: Grants, expires_in: Option<u64>) -> (String, ApiToken) {
    let (token, digest) = secrets::new_api_token();
    let now = memory::now();
    let expires_at = expires_in.map(|s| {
        now + chrono::Duration::seconds(i64::try_from(s.min(MAX_EXPIRES_IN)).unwrap_or(0))
    });
    (
        token,
        ApiToken {
            id: secrets::new_id("tok_"),
            name: name.to_owned(),
            digest,
            grants,
            created_by: None,
            created_at: now,
            expires_at,
            last_used_at: None,
            revoked_at: None,
        },
    )
}

/// The token actions, on an open store.
pub async fn run_token(
    store: &dyn AuthStore,
    command: TokenCommand,
    out: &mut dyn std::io::Write,
) -> Outcome {
    let write_err = |e: std::io::Error| CliError::Failed(format!("cannot write to stdout: {e}"));
    match command {
        TokenCommand::Create(a) => {
            if a.expires_in.is_some_and(|s| s == 0 || s > MAX_EXPIRES_IN) {
                return Err(CliError::Usage(format!(
                    "--expires-in must be between 1 and {MAX_EXPIRES_IN} seconds (100 years)"
                )));
            }
            let grants = Grants::new(a.roles);
            let (secret, token) = new_token(&a.name, grants.clone(), a.expires_in);
            store.create_token(token.clone()).await?;
            audit(
                store,
                Action::TokenCreated,
                &token.id,
                json!({"name": token.name, "roles": grant_list(&grants), "expires_at": token.expires_at}),
            )
            .await?;
            eprintln!(
                "token {} ({}) created; it is shown once, below",
                token.id, token.name
            );
            writeln!(out, "{secret}").map_err(write_err)
        }
        TokenCommand::List(_) => {
            let tokens = store.tokens().await?;
            writeln!(out, "{}", token_table(&tokens).trim_end()).map_err(write_err)
        }
        TokenCommand::Revoke(a) => {
            let Some(token) = store.token(&a.id).await? else {
                return Err(CliError::Failed(format!(
                    "no token with id {:?} (see `rtconfig token list`)",
                    a.id
                )));
            };
            if !store.revoke_token(&a.id, memory::now()).await? {
                return Err(CliError::Failed(format!(
                    "token {} is already revoked",
                    a.id
                )));
            }
            audit(
                store,
                Action::TokenRevoked,
                &a.id,
                json!({"name": token.name}),
            )
            .await?;
            writeln!(out, "token {} ({}) revoked", a.id, token.name).map_err(write_err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::conformance::{at, new_user};

    #[test]
    fn exactly_one_store_flag() {
        let args = |url: Option<&str>, dir: Option<&str>| LedgerArgs {
            database_url: url.map(str::to_owned),
            database_url_file: None,
            data_dir: dir.map(PathBuf::from),
        };
        assert_eq!(
            store_choice(&args(None, Some("d"))).expect("dir"),
            StoreChoice::DataDir("d".into())
        );
        assert_eq!(
            store_choice(&args(Some("postgres://h/db"), None)).expect("url"),
            StoreChoice::Database("postgres://h/db".into())
        );
        for (url, dir, says) in [
            (None, None, "--data-dir DIR"),
            (Some("postgres://h/db"), Some("d"), "not both"),
            (Some("postgres://h:notaport/db"), None, "--database-url"),
        ] {
            let e = store_choice(&args(url, dir)).expect_err("refused");
            assert_eq!(e.exit_code(), 64);
            assert!(e.to_string().contains(says), "{e}");
        }
    }

    #[test]
    fn the_password_is_stdin_without_its_line_break() {
        for (input, want) in [
            ("correct horse battery\n", Some("correct horse battery")),
            ("correct horse battery\r\n", Some("correct horse battery")),
            ("no newline at all", Some("no newline at all")),
            (" spaces kept \n", Some(" spaces kept ")),
            ("", None),
            ("\n", None),
        ] {
            let got = read_password(input.as_bytes()).ok();
            assert_eq!(got.as_deref(), want, "{input:?}");
        }
    }

    #[tokio::test]
    async fn a_weak_password_is_a_usage_error_naming_the_reason() {
        let e = hash_new_password("short".into(), "alice")
            .await
            .expect_err("weak");
        assert_eq!(e.exit_code(), 64);
        assert!(e.to_string().contains("at least 12 characters"), "{e}");
        let hash = hash_new_password("a long enough passphrase".into(), "alice")
            .await
            .expect("strong");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
    }

    #[test]
    fn the_user_table_shows_roles_state_mfa_and_sso() {
        let mut alice = User {
            id: "u_1".into(),
            username: "alice".into(),
            grants: crate::auth::conformance::grants(&["admin", "editor:demo"]),
            disabled: false,
            password_hash: new_user("alice", &[]).password_hash,
            oidc: None,
            totp: None,
            failures: LoginFailures::default(),
            created_at: at(0),
            updated_at: at(0),
        };
        let mut bob = alice.clone();
        bob.username = "bob".into();
        bob.grants = Grants::default();
        bob.disabled = true;
        bob.failures = LoginFailures {
            consecutive: 100,
            last_at: Some(at(10)),
            window_start: Some(at(0)),
            in_window: 100,
        };
        bob.oidc = Some(crate::auth::store::OidcLink {
            issuer: "https://idp.example".into(),
            subject: "s".into(),
        });
        alice.totp = Some(crate::auth::store::TotpState {
            secret_encrypted: "x".into(),
            confirmed: true,
            last_step: None,
            recovery_codes: vec![],
        });
        let text = user_table(&[alice, bob], at(20));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME   ROLES               DISABLED  LOCKED  MFA   SSO",
                "alice  editor:demo, admin  no        no      totp  -",
                "bob    none                yes       yes     -     https://idp.example",
            ]
        );
    }

    #[tokio::test]
    async fn every_action_is_audited_as_cli() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedAuthStore::open(dir.path()).expect("open");
        let args = || LedgerArgs {
            database_url: None,
            database_url_file: None,
            data_dir: Some(dir.path().to_owned()),
        };
        let mut out = Vec::new();
        run_user(
            &store,
            UserCommand::Add(UserAdd {
                name: "alice".into(),
                roles: vec!["viewer".parse().expect("grant")],
                password_stdin: true,
                store: args(),
            }),
            Some("a long enough passphrase".into()),
            &mut out,
        )
        .await
        .expect("add");
        run_user(
            &store,
            UserCommand::Grant(UserGrants {
                name: "alice".into(),
                roles: vec!["editor:demo".parse().expect("grant")],
                store: args(),
            }),
            None,
            &mut out,
        )
        .await
        .expect("grant");
        run_token(
            &store,
            TokenCommand::Create(TokenCreate {
                name: "ci".into(),
                roles: vec!["viewer".parse().expect("grant")],
                expires_in: Some(60),
                store: args(),
            }),
            &mut out,
        )
        .await
        .expect("token");
        let page = store
            .audit(&crate::auth::store::AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("audit");
        let actions: Vec<(&str, &str)> = page
            .events
            .iter()
            .map(|e| (e.event.action.as_str(), e.event.actor.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("token_created", "cli"),
                ("roles_changed", "cli"),
                ("user_created", "cli")
            ]
        );
        let text = String::from_utf8(out).expect("utf8");
        let token = text.lines().last().expect("the token line");
        assert!(token.starts_with("rtc_"), "{text}");
        assert!(
            !serde_json::to_string(&page.events)
                .expect("json")
                .contains(token),
            "the audit log never holds the token"
        );
        let alice = store
            .user_by_name("alice")
            .await
            .expect("read")
            .expect("alice");
        assert_eq!(
            alice.grants,
            crate::auth::conformance::grants(&["viewer", "editor:demo"])
        );
    }
}
