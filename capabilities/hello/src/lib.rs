//! The `hello` capability: the tutorial tool. `greet("Ada")` returns `Hello, Ada!`.

femtoclaw_sdk::generate!({
    inline: r#"
        package femtoclaw:hello@0.1.0;

        world hello {
            include femtoclaw:host/capability@0.1.0;

            /// Greets `name`.
            export greet: func(name: string) -> string;
        }
    "#,
    path: "../../wit",
});

struct Hello;

impl Guest for Hello {
    fn greet(name: String) -> String {
        format!("Hello, {name}!")
    }
}

export!(Hello);
