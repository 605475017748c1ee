//! Test guest: ordinary Rust `std::net` calls, which import `wasi:sockets`. Errors are returned
//! as text, never a trap.

femtoclaw_sdk::generate!({
    inline: r#"
        package femtoclaw:net@0.1.0;

        world net {
            include femtoclaw:host/capability@0.1.0;

            /// `std::net::TcpStream::connect`.
            export tcp-connect: func(address: string) -> result<_, string>;
            /// `std::net::UdpSocket::bind`.
            export udp-bind: func(address: string) -> result<_, string>;
            /// `std::net::ToSocketAddrs` on `name:80`.
            export lookup: func(name: string) -> result<u32, string>;
        }
    "#,
    path: "../../../wit",
});

struct Net;

impl Guest for Net {
    fn tcp_connect(address: String) -> Result<(), String> {
        std::net::TcpStream::connect(address.as_str())
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn udp_bind(address: String) -> Result<(), String> {
        std::net::UdpSocket::bind(address.as_str())
            .map(drop)
            .map_err(|e| e.to_string())
    }

    fn lookup(name: String) -> Result<u32, String> {
        use std::net::ToSocketAddrs as _;
        (name.as_str(), 80)
            .to_socket_addrs()
            .map(|addrs| u32::try_from(addrs.count()).unwrap_or(u32::MAX))
            .map_err(|e| e.to_string())
    }
}

export!(Net);
