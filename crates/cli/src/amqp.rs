//! `fjord amqp ...`: the AMQP gateway's virtual hosts, queues, exchanges,
//! bindings, users and permissions (what `rabbitmqctl` lists and sets).

use std::io::BufRead;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::seg;
use crate::error::{CliError, Result};
use crate::output::{arr, s, table};
use crate::{Ctx, confirm, ensure_can_confirm};

/// `fjord amqp ...`
#[derive(Debug, Subcommand)]
pub enum AmqpCommand {
    /// Virtual hosts.
    Vhosts,
    /// Create a virtual host.
    AddVhost {
        /// Name.
        vhost: String,
    },
    /// Delete a virtual host with its queues (and their messages), exchanges and bindings (asks first unless --yes).
    DeleteVhost {
        /// Name.
        vhost: String,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        yes: bool,
    },
    /// Queues with ready and unacknowledged messages and consumers.
    Queues(VHostArg),
    /// Exchanges.
    Exchanges(VHostArg),
    /// Bindings.
    Bindings(VHostArg),
    /// Users.
    Users,
    /// Create or replace a user; the password is read from stdin when not given.
    AddUser {
        /// User name.
        user: String,
        /// Password (visible to other local users in the process list; prefer stdin).
        password: Option<String>,
        /// A RabbitMQ `rabbit_password_hashing_sha256` hash instead of a password.
        #[arg(long, conflicts_with = "password")]
        password_hash: Option<String>,
        /// Tags, comma-separated (e.g. administrator).
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
    },
    /// Delete a user and its permissions.
    DeleteUser {
        /// User name.
        user: String,
    },
    /// Every user's permissions per virtual host.
    Permissions,
    /// Set a user's configure, write and read expressions on a virtual host.
    SetPermissions {
        /// User name.
        user: String,
        /// Resources the user may declare and delete (regex; "" none, ".*" all).
        configure: String,
        /// Exchanges it may publish to, queues it may bind (regex).
        write: String,
        /// Queues it may consume from, exchanges it may bind from (regex).
        read: String,
        /// Virtual host.
        #[arg(short = 'p', long, default_value = "/")]
        vhost: String,
    },
    /// The disk alarm: free space, the limit, whether publishers are blocked; `--limit` sets the limit.
    DiskAlarm {
        /// New limit in bytes (0 never blocks).
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Remove a user's permissions on a virtual host.
    ClearPermissions {
        /// User name.
        user: String,
        /// Virtual host.
        #[arg(short = 'p', long, default_value = "/")]
        vhost: String,
    },
}

/// `--vhost` for the list commands.
#[derive(Debug, Args)]
pub struct VHostArg {
    /// Only this virtual host [default: all].
    #[arg(short = 'p', long)]
    vhost: Option<String>,
}

fn query(a: &VHostArg) -> Vec<(&'static str, String)> {
    a.vhost.iter().map(|v| ("vhost", v.clone())).collect()
}

fn text(v: &Value) -> String {
    if v.as_object().is_some_and(|o| o.is_empty()) { String::new() } else { v.to_string() }
}

pub(crate) fn run(ctx: &Ctx, cmd: AmqpCommand) -> Result<()> {
    let done = |what: String| move |_: &Value| what;
    match cmd {
        AmqpCommand::Vhosts => {
            let v = ctx.client.get("/api/v1/amqp/vhosts", &[])?;
            ctx.emit(&v, |v| {
                let rows = arr(&v["vhosts"]).iter().map(|h| vec![s(&h["name"]), s(&h["queues"]), s(&h["exchanges"])]);
                table(&["vhost", "queues", "exchanges"], rows.collect())
            })
        }
        AmqpCommand::AddVhost { vhost } => {
            ctx.client.put(&format!("/api/v1/amqp/vhosts/{}", seg(&vhost)), &json!({}))?;
            ctx.emit(&json!({ "vhost": vhost }), done(format!("Virtual host '{vhost}' is there.")))
        }
        AmqpCommand::DeleteVhost { vhost, yes } => {
            let action = format!("delete virtual host '{vhost}'");
            ensure_can_confirm(yes, &action)?;
            confirm(yes, &action, &format!("Delete virtual host '{vhost}' with its queues and their messages?"))?;
            ctx.client.delete(&format!("/api/v1/amqp/vhosts/{}", seg(&vhost)))?;
            ctx.emit(&json!({ "deleted": vhost }), done(format!("Deleted virtual host '{vhost}'.")))
        }
        AmqpCommand::Queues(a) => {
            let v = ctx.client.get("/api/v1/amqp/queues", &query(&a))?;
            ctx.emit(&v, |v| {
                let rows = arr(&v["queues"]).iter().map(|q| {
                    vec![
                        s(&q["vhost"]),
                        s(&q["name"]),
                        s(&q["messages_ready"]),
                        s(&q["messages_unacknowledged"]),
                        s(&q["consumers"]),
                        s(&q["durable"]),
                        text(&q["arguments"]),
                    ]
                });
                table(&["vhost", "name", "ready", "unacked", "consumers", "durable", "arguments"], rows.collect())
            })
        }
        AmqpCommand::Exchanges(a) => {
            let v = ctx.client.get("/api/v1/amqp/exchanges", &query(&a))?;
            ctx.emit(&v, |v| {
                let rows = arr(&v["exchanges"]).iter().map(|e| {
                    vec![s(&e["vhost"]), s(&e["name"]), s(&e["type"]), s(&e["durable"]), text(&e["arguments"])]
                });
                table(&["vhost", "name", "type", "durable", "arguments"], rows.collect())
            })
        }
        AmqpCommand::Bindings(a) => {
            let v = ctx.client.get("/api/v1/amqp/bindings", &query(&a))?;
            ctx.emit(&v, |v| {
                let rows = arr(&v["bindings"]).iter().map(|b| {
                    vec![
                        s(&b["vhost"]),
                        s(&b["source"]),
                        s(&b["destination"]),
                        s(&b["destination_type"]),
                        s(&b["routing_key"]),
                        text(&b["arguments"]),
                    ]
                });
                table(&["vhost", "source", "destination", "type", "routing key", "arguments"], rows.collect())
            })
        }
        AmqpCommand::Users => {
            let v = ctx.client.get("/api/v1/amqp/users", &[])?;
            ctx.emit(&v, |v| {
                let rows = arr(&v["users"]).iter().map(|u| {
                    let tags: Vec<String> = arr(&u["tags"]).iter().map(s).collect();
                    vec![s(&u["name"]), tags.join(",")]
                });
                table(&["user", "tags"], rows.collect())
            })
        }
        AmqpCommand::AddUser { user, password, password_hash, tags } => {
            let body = match (password, password_hash) {
                (_, Some(h)) => json!({ "password_hash": h, "tags": tags }),
                (Some(p), None) => json!({ "password": p, "tags": tags }),
                (None, None) => json!({ "password": read_password()?, "tags": tags }),
            };
            ctx.client.put(&format!("/api/v1/amqp/users/{}", seg(&user)), &body)?;
            ctx.emit(&json!({ "user": user }), done(format!("User '{user}' stored.")))
        }
        AmqpCommand::DeleteUser { user } => {
            ctx.client.delete(&format!("/api/v1/amqp/users/{}", seg(&user)))?;
            ctx.emit(&json!({ "deleted": user }), done(format!("Deleted user '{user}'.")))
        }
        AmqpCommand::Permissions => {
            let v = ctx.client.get("/api/v1/amqp/permissions", &[])?;
            ctx.emit(&v, |v| {
                let rows = arr(&v["permissions"])
                    .iter()
                    .map(|p| vec![s(&p["vhost"]), s(&p["user"]), s(&p["configure"]), s(&p["write"]), s(&p["read"])]);
                table(&["vhost", "user", "configure", "write", "read"], rows.collect())
            })
        }
        AmqpCommand::SetPermissions { user, configure, write, read, vhost } => {
            let body = json!({ "configure": configure, "write": write, "read": read });
            ctx.client.put(&permission_path(&vhost, &user), &body)?;
            ctx.emit(&body, done(format!("Set permissions of '{user}' on virtual host '{vhost}'.")))
        }
        AmqpCommand::DiskAlarm { limit } => {
            let v = match limit {
                Some(l) => ctx.client.put("/api/v1/amqp/disk-alarm", &json!({ "limit_bytes": l }))?,
                None => ctx.client.get("/api/v1/amqp/disk-alarm", &[])?,
            };
            ctx.emit(&v, |v| {
                let state = if v["alarm"].as_bool() == Some(true) { "ON: publishers blocked" } else { "off" };
                crate::output::fields(vec![
                    ("alarm", state.to_string()),
                    ("free", crate::output::bytes(&v["free_bytes"])),
                    ("limit", crate::output::bytes(&v["limit_bytes"])),
                ])
            })
        }
        AmqpCommand::ClearPermissions { user, vhost } => {
            ctx.client.delete(&permission_path(&vhost, &user))?;
            ctx.emit(
                &json!({ "cleared": user, "vhost": vhost }),
                done(format!("Cleared permissions of '{user}' on '{vhost}'.")),
            )
        }
    }
}

fn permission_path(vhost: &str, user: &str) -> String {
    format!("/api/v1/amqp/permissions/{}/{}", seg(vhost), seg(user))
}

/// The first line of stdin, without its line ending.
fn read_password() -> Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| CliError::Input { path: "stdin".into(), source: e })?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    if p.is_empty() {
        return Err(CliError::Usage("no password given (argument or first line of stdin)".into()));
    }
    Ok(p)
}
