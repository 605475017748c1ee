//! Test guest: takes and returns every WIT value type, so JSON ↔ WIT can be checked both ways
//! against a real component. Also exports an interface (named `<interface>#<function>`) and a
//! resource (which the host refuses to pass through JSON).

femtoclaw_sdk::generate!({
    inline: r#"
        package femtoclaw:types-guest@0.1.0;

        interface shapes {
            record point { x: s32, y: s32 }
            variant shape { circle(f64), rect(tuple<point, point>), empty }
            enum color { red, green, blue }
            flags perms { read, write, exec }

            record everything {
                b: bool,
                u8v: u8, s8v: s8, u16v: u16, s16v: s16,
                u32v: u32, s32v: s32, u64v: u64, s64v: s64,
                f32v: f32, f64v: f64,
                c: char,
                s: string,
                l: list<u32>,
                p: point,
                t: tuple<string, u8>,
                v: shape,
                e: color,
                o: option<string>,
                oo: option<option<u8>>,
                r: result<u32, string>,
                unit-result: result,
                fl: perms,
                nested: list<option<point>>,
            }
        }

        interface math {
            /// Twice `x`.
            double: func(x: u32) -> u32;
        }

        interface counters {
            resource counter {
                constructor(start: u32);
                value: func() -> u32;
            }
            make: func(start: u32) -> counter;
        }

        world types-guest {
            include femtoclaw:host/capability@0.1.0;
            use shapes.{everything, shape, color, perms};

            export echo: func(x: everything) -> everything;
            export echo-shape: func(x: shape) -> shape;
            export echo-color: func(x: color) -> color;
            export echo-perms: func(x: perms) -> perms;
            export echo-f64: func(x: f64) -> f64;
            export pair: func(a: s64, b: option<string>) -> tuple<s64, option<string>>;
            export nothing: func();
            export math;
            export counters;
        }
    "#,
    path: "../../../wit",
});

use exports::femtoclaw::types_guest::{counters, math};

struct Types;

impl Guest for Types {
    fn echo(x: Everything) -> Everything {
        x
    }

    fn echo_shape(x: Shape) -> Shape {
        x
    }

    fn echo_color(x: Color) -> Color {
        x
    }

    fn echo_perms(x: Perms) -> Perms {
        x
    }

    fn echo_f64(x: f64) -> f64 {
        x
    }

    fn pair(a: i64, b: Option<String>) -> (i64, Option<String>) {
        (a, b)
    }

    fn nothing() {}
}

impl math::Guest for Types {
    fn double(x: u32) -> u32 {
        x.wrapping_mul(2)
    }
}

struct Counter(u32);

impl counters::GuestCounter for Counter {
    fn new(start: u32) -> Self {
        Counter(start)
    }

    fn value(&self) -> u32 {
        self.0
    }
}

impl counters::Guest for Types {
    type Counter = Counter;

    fn make(start: u32) -> counters::Counter {
        counters::Counter::new(Counter(start))
    }
}

export!(Types);
