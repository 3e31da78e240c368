//! `escape`: a hostile command that probes its sandbox (files outside and inside its preopens, TCP) and prints what worked.
//!
//! Every probe prints one line `<probe> <target>: ok ...` or `<probe> <target>: denied (...)`,
//! so tests can assert on exactly what the sandbox let through. It always exits 0.
//!
//! Environment: `TARGET=ip:port` makes it try a TCP connect there; `LISTEN=port` makes it
//! try to listen on 127.0.0.1:port.

use std::net::{Ipv4Addr, SocketAddrV4};

use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
use wasip2::sockets::tcp::TcpSocket;
use wasip2::sockets::tcp_create_socket::create_tcp_socket;

fn main() {
    for path in ["/etc/hostname", "../../etc/passwd", "/etc/passwd", "/"] {
        probe_read(path);
    }

    // Everything the host preopened for us: list it, read what is there, try to write.
    for (_descriptor, guest_path) in wasip2::filesystem::preopens::get_directories() {
        println!("preopen {guest_path}");
        match std::fs::read_dir(&guest_path) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.is_file() {
                        probe_read(&path.to_string_lossy());
                    }
                }
            }
            Err(e) => println!("list {guest_path}: denied ({e})"),
        }
        probe_write(&format!(
            "{}/escape-was-here.txt",
            guest_path.trim_end_matches('/')
        ));
        // Climbing out of the preopen must not work either.
        probe_read(&format!(
            "{}/../etc/hostname",
            guest_path.trim_end_matches('/')
        ));
    }

    if let Ok(target) = std::env::var("TARGET") {
        match target.parse::<SocketAddrV4>() {
            Ok(addr) => match connect(addr) {
                Ok(()) => println!("connect {addr}: ok"),
                Err(e) => println!("connect {addr}: denied ({e:?})"),
            },
            Err(e) => println!("connect {target}: bad TARGET ({e})"),
        }
    }
    if let Ok(port) = std::env::var("LISTEN") {
        match port.parse::<u16>() {
            Ok(port) => match listen(port) {
                Ok(()) => println!("listen {port}: ok"),
                Err(e) => println!("listen {port}: denied ({e:?})"),
            },
            Err(e) => println!("listen {port}: bad LISTEN ({e})"),
        }
    }
}

fn probe_read(path: &str) {
    match std::fs::read(path) {
        Ok(bytes) => println!(
            "read {path}: ok {} bytes: {}",
            bytes.len(),
            String::from_utf8_lossy(&bytes).trim_end()
        ),
        Err(e) => println!("read {path}: denied ({e})"),
    }
}

fn probe_write(path: &str) {
    match std::fs::write(path, b"escaped\n") {
        Ok(()) => println!("write {path}: ok"),
        Err(e) => println!("write {path}: denied ({e})"),
    }
}

fn wasi_addr(addr: SocketAddrV4) -> IpSocketAddress {
    let [a, b, c, d] = addr.ip().octets();
    IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port: addr.port(),
        address: (a, b, c, d),
    })
}

/// Waits for a two-phase wasi:sockets operation to finish.
fn finish<T>(
    socket: &TcpSocket,
    mut step: impl FnMut() -> Result<T, ErrorCode>,
) -> Result<T, ErrorCode> {
    let pollable = socket.subscribe();
    loop {
        match step() {
            Err(ErrorCode::WouldBlock) => pollable.block(),
            other => return other,
        }
    }
}

fn connect(addr: SocketAddrV4) -> Result<(), ErrorCode> {
    let network = instance_network();
    let socket = create_tcp_socket(IpAddressFamily::Ipv4)?;
    socket.start_connect(&network, wasi_addr(addr))?;
    let (_input, output) = finish(&socket, || socket.finish_connect())?;
    // Say hello so the test server can tell a real connection from a probe.
    let _ = output.blocking_write_and_flush(b"escape\n");
    Ok(())
}

fn listen(port: u16) -> Result<(), ErrorCode> {
    let network = instance_network();
    let socket = create_tcp_socket(IpAddressFamily::Ipv4)?;
    socket.start_bind(
        &network,
        wasi_addr(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
    )?;
    finish(&socket, || socket.finish_bind())?;
    socket.start_listen()?;
    finish(&socket, || socket.finish_listen())?;
    Ok(())
}
