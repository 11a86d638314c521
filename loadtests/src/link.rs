//! A network link with a round-trip time: a TCP proxy that delays every
//! byte by half the RTT in each direction (`loadtests link`).
//!
//! This machine's kernel has no `netem`, so latency between simulated
//! hosts is put on the path by a proxy between the tiers: the app connects
//! to the link's port, the link to Postgres or Redis. Each direction of a
//! connection is a reader thread that stamps every chunk it reads with its
//! due time and a writer thread that sends it no earlier; order is kept
//! and a chunk is never merged with a later one, so a request/response
//! protocol pays one RTT per round trip, as on a real wire. Bandwidth and
//! loss are not simulated.
//!
//! Why threads and not tokio: tokio's timer has a 1 ms granularity, and
//! the lab's links are 0.5 ms; `std::thread::sleep` is accurate to tens of
//! microseconds. Why not `noxious` (a Rust port of Toxiproxy): it is a
//! whole proxy server with an HTTP API and toxics chains, on tokio's timer
//! too, and brings tokio-util 0.6 and rand 0.8 beside ours; a fixed delay
//! is all the lab needs.
//!
//! Memory is bounded: at most `QUEUE` chunks of at most `CHUNK` bytes wait
//! per direction (the reader blocks when the writer is behind, as a full
//! TCP window would).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

const CHUNK: usize = 64 * 1024;
const QUEUE: usize = 64;

#[derive(Debug, Clone, clap::Args)]
pub struct LinkArgs {
    /// Where the link listens (port 0: any free port; the chosen address is
    /// printed as "link on ADDR").
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// The server behind the link.
    #[arg(long)]
    pub to: SocketAddr,
    /// Round-trip time the link adds, milliseconds (half each way).
    #[arg(long, default_value_t = 0.0)]
    pub rtt_ms: f64,
}

/// Runs the link until the process is killed.
pub fn run(args: &LinkArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::ensure!(
        args.rtt_ms >= 0.0 && args.rtt_ms <= 10_000.0,
        "--rtt-ms must be between 0 and 10000"
    );
    let listener = TcpListener::bind(&args.listen)?;
    eprintln!(
        "link on {} to {} rtt {} ms",
        listener.local_addr()?,
        args.to,
        args.rtt_ms
    );
    serve(
        listener,
        args.to,
        Duration::from_secs_f64(args.rtt_ms / 2000.0),
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// Accepts connections forever; each gets its own connection to `to`.
pub fn serve(listener: TcpListener, to: SocketAddr, one_way: Duration) {
    for client in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let Ok(server) = TcpStream::connect(to) else {
                let _ = client.shutdown(Shutdown::Both);
                return;
            };
            // Without this, small writes wait for the peer's delayed ACK
            // (tens of ms): the link would add far more than its delay.
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                return;
            };
            std::thread::spawn(move || pipe(c2, s2, one_way));
            pipe(server, client, one_way);
        });
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = sync_channel::<(Instant, Vec<u8>)>(QUEUE);
    let writer = std::thread::spawn(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
        // The reader saw the end: pass it on after the last chunk.
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
    let _ = from.shutdown(Shutdown::Read);
}
