//! The client subcommands of the `daftka` CLI: `topic`, `produce`, `consume`, `group`, `node` and
//! `bench`,
//! over a node's HTTP API (`bench` also over the native client).
//!
//! | module | role |
//! |---|---|
//! | [`args`] | clap types: [`ClientOpts`], [`ClientCommand`] and each subcommand's arguments |
//! | [`topic`] | `topic create|list|describe|delete` and their tab-separated output |
//! | [`produce`] | stdin lines -> batched, base64 produce requests |
//! | [`consume`] | fetch loop over partitions, output lines |
//! | [`member`] | `consume --group`: a group member's join, poll, print, commit and leave loop |
//! | [`group`] | `group list|describe|reset` and their output |
//! | [`node`] | `node list|drain|undrain` and their output |
//!
//! Output is meant for pipelines, like kcat's: data on stdout, one line per item, tab-separated fields,
//! no headers (`group describe`, for people, has a summary and two tables with a header each).
//! `produce` prints nothing on success unless `--verbose`. Errors are returned as [`ClientError`];
//! the binary prints them as `error: <code>: <message>` on stderr and exits with
//! [`ClientError::exit_code`] (1, or 2 for usage errors).
//!
//! [`run_until`] takes stdin and stdout as parameters so tests drive it with in-memory buffers, and
//! the future that asks a long-running command to end cleanly (the binary passes Ctrl-C and
//! SIGTERM); tests use `run`, which never asks.

/// How often `--wait` (a drain, a move) looks at the cluster again.
const WAIT_POLL_MS: u64 = 500;

mod args;
mod consume;
mod group;
mod member;
mod node;
mod produce;
mod topic;

use std::future::Future;

use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt};

pub use args::{ClientCommand, ClientOpts};
use daftka_http::client::Api;
pub use daftka_http::client::ClientError;

/// Runs one client command against the node at `opts.url`, reading records from `stdin` (produce)
/// and writing output to `stdout`.
///
/// A closed stdout (`daftka consume t | head`) ends the command successfully.
#[cfg(test)]
pub async fn run(
    opts: ClientOpts,
    cmd: ClientCommand,
    stdin: impl AsyncBufRead + Unpin,
    stdout: impl AsyncWrite + Unpin,
) -> Result<(), ClientError> {
    run_until(opts, cmd, stdin, stdout, std::future::pending()).await
}

/// `run`, and when `stop` completes a command that would otherwise go on ends cleanly: a group
/// member (`consume --group`) stops reading, and leaves its group; a bench stops sending and prints
/// the summary of what was done. `stop` is polled only by such
/// commands, so a signal handler it installs when first polled is installed only for them.
pub async fn run_until(
    opts: ClientOpts,
    cmd: ClientCommand,
    stdin: impl AsyncBufRead + Unpin,
    mut stdout: impl AsyncWrite + Unpin,
    stop: impl Future<Output = ()>,
) -> Result<(), ClientError> {
    let api = Api::new(&opts.url)?;
    let result = match cmd {
        ClientCommand::Topic(args) => topic::run(&api, args.command, &mut stdout).await,
        ClientCommand::Produce(args) => produce::run(&api, &args, stdin, &mut stdout).await,
        ClientCommand::Consume(args) => consume::run(&api, &args, &mut stdout, stop).await,
        ClientCommand::Group(args) => group::run(&api, args.command, &mut stdout).await,
        ClientCommand::Node(args) => node::run(&api, args.command, &mut stdout).await,
        ClientCommand::Reassignments => {
            let text: String = api
                .reassignments()
                .await
                .map(|list| list.iter().map(topic::format_reassignment).collect())?;
            stdout
                .write_all(text.as_bytes())
                .await
                .map_err(ClientError::from)
        }
        ClientCommand::Chaos(args) => chaos(&api, args.command, &mut stdout).await,
        ClientCommand::Bench(args) => daftka_bench::run(&api, &args, &mut stdout, stop).await,
    };
    let result = match result {
        Ok(()) => stdout.flush().await.map_err(ClientError::from),
        Err(e) => Err(e),
    };
    match result {
        Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `daftka chaos list|kill`.
async fn chaos(
    api: &Api,
    command: args::ChaosCommand,
    out: &mut (impl AsyncWrite + Unpin),
) -> Result<(), ClientError> {
    match command {
        args::ChaosCommand::List => {
            let mut text = String::new();
            for a in api.list_actors().await? {
                text.push_str(&a);
                text.push('\n');
            }
            out.write_all(text.as_bytes()).await?;
        }
        args::ChaosCommand::Kill { actor } => api.kill_actor(&actor).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::args::{TopicArgs, TopicCommand};
    use super::*;

    #[test]
    fn errors_print_code_and_message_and_map_to_exit_codes() {
        // The documented rendering and exit codes of each kind of failure.
        let e = ClientError::Api {
            code: "unknown_topic".into(),
            message: r#"topic "x" does not exist"#.into(),
            retryable: false,
            log_start_offset: None,
        };
        assert_eq!(
            format!("error: {e}"),
            r#"error: unknown_topic: topic "x" does not exist"#
        );
        assert_eq!(e.exit_code(), 1);
        assert_eq!(ClientError::Usage("bad".into()).exit_code(), 2);
        let e = ClientError::Transport {
            url: "http://h:1/v1/topics".into(),
            message: "connection refused".into(),
            connect: true,
        };
        assert_eq!(
            e.to_string(),
            "unavailable: cannot reach http://h:1/v1/topics: connection refused"
        );
        assert!(e.retryable());
        assert_eq!(e.exit_code(), 1);
    }

    #[tokio::test]
    async fn bad_url_fails_before_any_request() {
        // A malformed --url is a usage error.
        let opts = ClientOpts {
            url: "not a url".into(),
        };
        let cmd = ClientCommand::Topic(TopicArgs {
            command: TopicCommand::List,
        });
        let mut out = Vec::new();
        let err = run(opts, cmd, &b""[..], &mut out)
            .await
            .expect_err("bad url");
        assert_eq!(err.exit_code(), 2);
        assert!(out.is_empty());
    }
}
