//! Test guest: imports two interfaces that no FemtoClaw host provides, so loading it must be
//! refused naming both.

femtoclaw_sdk::generate!({
    inline: r#"
        package femtoclaw:unprovided@0.1.0;

        interface elsewhere {
            ping: func() -> u32;
        }

        interface nowhere {
            pong: func() -> u32;
        }

        world unprovided {
            include femtoclaw:host/capability@0.1.0;
            import elsewhere;
            import nowhere;

            /// Calls both.
            export run: func() -> u32;
        }
    "#,
    path: "../../../wit",
});

struct Unprovided;

impl Guest for Unprovided {
    fn run() -> u32 {
        femtoclaw::unprovided::elsewhere::ping() + femtoclaw::unprovided::nowhere::pong()
    }
}

export!(Unprovided);
