//! `femtoclaw_sdk::generate!`'s companion: embeds the doc comments of a capability's exported
//! functions in its component, so that the host can describe each function (`GET
//! /v1/capabilities`, `capability inspect`, MCP tool descriptions) from the WIT the author
//! wrote. Component encoding drops WIT docs; this custom section of the core module,
//! `femtoclaw:docs`, keeps them: a JSON object from the name the host calls a function by
//! (`greet`, or `<interface>#<function>` for a function of an exported interface) to its doc
//! comment.
//!
//! ```ignore
//! femtoclaw_sdk_macros::docs!({
//!     inline: r#"
//!         package example:hello@0.1.0;
//!         world hello {
//!             /// Greets `name`.
//!             export greet: func(name: string) -> string;
//!         }
//!     "#,
//! });
//! ```

use proc_macro::TokenStream;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, LitStr, Token, braced};
use wit_parser::{Resolve, WorldItem};

/// The name of the custom section the docs are kept in.
const SECTION: &str = "femtoclaw:docs";

/// One `key: "value"` of the macro's input.
struct Field {
    key: Ident,
    value: LitStr,
}

impl Parse for Field {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = input.parse()?;
        input.parse::<Token![:]>()?;
        Ok(Self {
            key,
            value: input.parse()?,
        })
    }
}

/// `{ inline: "…", path: "…", world: "…" }`, any of them (others, meant for wit-bindgen,
/// are ignored).
struct Input(Punctuated<Field, Token![,]>);

impl Parse for Input {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let content;
        braced!(content in input);
        Ok(Self(content.parse_terminated(Field::parse, Token![,])?))
    }
}

/// Embeds the doc comments of the world's exported functions as the `femtoclaw:docs` custom
/// section; see the crate docs.
#[proc_macro]
pub fn docs(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as Input);
    match docs_of(&input) {
        Ok(json) => {
            let bytes = json.as_bytes();
            let len = bytes.len();
            let bytes = bytes.iter();
            quote! {
                #[doc(hidden)]
                #[used]
                #[cfg_attr(target_family = "wasm", unsafe(link_section = #SECTION))]
                static __FEMTOCLAW_DOCS: [u8; #len] = [#(#bytes),*];
            }
            .into()
        }
        Err(message) => syn::Error::new(proc_macro2::Span::call_site(), message)
            .to_compile_error()
            .into(),
    }
}

/// The JSON the section holds.
fn docs_of(input: &Input) -> Result<String, String> {
    let field = |name: &str| {
        input
            .0
            .iter()
            .find(|f| f.key == name)
            .map(|f| f.value.value())
    };
    let root = std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?;
    let mut resolve = Resolve::default();
    let mut main = None;
    if let Some(path) = field("path") {
        let (package, _) = resolve
            .push_path(std::path::Path::new(&root).join(&path))
            .map_err(|e| format!("femtoclaw docs: WIT at `{path}`: {e:#}"))?;
        main = Some(package);
    }
    if let Some(inline) = field("inline") {
        main = Some(
            resolve
                .push_str("inline.wit", &inline)
                .map_err(|e| format!("femtoclaw docs: the inline WIT: {e:#}"))?,
        );
    }
    let package = main.ok_or("femtoclaw docs: give `inline` WIT or a `path`")?;
    let world = resolve
        .select_world(&[package], field("world").as_deref())
        .map_err(|e| format!("femtoclaw docs: {e:#}"))?;
    let mut docs = serde_json::Map::new();
    for (key, item) in &resolve.worlds[world].exports {
        match item {
            WorldItem::Function(f) => {
                if let Some(doc) = &f.docs.contents {
                    docs.insert(f.name.clone(), doc.trim().into());
                }
            }
            WorldItem::Interface { id, .. } => {
                let prefix = resolve.name_world_key(key);
                for (name, f) in &resolve.interfaces[*id].functions {
                    if let Some(doc) = &f.docs.contents {
                        docs.insert(format!("{prefix}#{name}"), doc.trim().into());
                    }
                }
            }
            WorldItem::Type { .. } => {}
        }
    }
    serde_json::to_string(&docs).map_err(|e| e.to_string())
}
