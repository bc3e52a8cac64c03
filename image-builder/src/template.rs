//! Rendering the Packer template and the provisioning script from the sources in `packer/`.
//!
//! Pure: validated [`Settings`] in, text out. The sources are compiled in (`include_str!`), so
//! an installed image-builder needs no checkout. Each template gets a typed context, and every
//! value is escaped on its way out by tera's autoescape with the escaper of the target language:
//! [`hcl_string`] for the HCL2 templates, [`support::shell::quote`] for the script. A template
//! therefore cannot forget to escape a value; the only way around it is an explicit `| safe`,
//! which the sources never use.

use serde::Serialize;
use tera::{Context, Tera};

use crate::packer::PackerVersion;
use crate::spec::{
    AuthMode, BaseImage, GalleryRegions, GallerySpec, Placement, Settings, SpecError, Target,
    INPUT_HASH_TAG,
};

/// The sources, as they are in `packer/` at the root of the repository.
pub const AZURE_SOURCE: &str = include_str!("../../packer/azure.pkr.hcl.tera");
pub const LOCAL_SOURCE: &str = include_str!("../../packer/local.pkr.hcl.tera");
pub const SCRIPT_SOURCE: &str = include_str!("../../packer/provision.sh.tera");

/// File names in a rendered directory. Packer loads every `*.pkr.hcl` of the directory.
pub const TEMPLATE_FILE: &str = "image.pkr.hcl";
pub const SCRIPT_FILE: &str = "provision.sh";
/// Where uploaded files sit in a rendered directory, and their names there.
pub const FILES_DIR: &str = "files";
pub const INSTALL_NOMAD_FILE: &str = "install-nomad";
pub const RUN_NOMAD_FILE: &str = "run-nomad";
pub const PUBLIC_KEY_FILE: &str = "release-key.asc";
/// Where the manifest post-processor writes, relative to the rendered directory.
pub const MANIFEST_FILE: &str = "packer-manifest.json";

/// A template that could not be rendered (a bug in a source, or a value tera refused).
#[derive(Debug, thiserror::Error)]
#[error("failed to render {source_name}: {detail}")]
pub struct TemplateError {
    pub source_name: &'static str,
    pub detail: String,
}

fn template_error(source_name: &'static str) -> impl Fn(tera::Error) -> TemplateError {
    move |e| {
        // tera keeps the useful part in the source chain.
        let mut detail = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            detail.push_str(&format!(": {c}"));
            cause = c.source();
        }
        TemplateError {
            source_name,
            detail,
        }
    }
}

/// The rendered text of one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub template: String,
    pub script: String,
}

/// Escapes text for the inside of a quoted HCL2 string (the caller writes the quotes).
///
/// HCL2 native syntax: `\\`, `\"`, `\n`, `\r`, `\t` and `\uNNNN` escapes; `${` starts an
/// interpolation and `%{` a directive, escaped by doubling the sigil (`$${`, `%%{`).
/// Source: https://github.com/hashicorp/hcl/blob/main/hclsyntax/spec.md#template-expressions
pub fn hcl_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn hcl_tera(name: &'static str, source: &str) -> Result<Tera, TemplateError> {
    let mut tera = Tera::default();
    tera.autoescape_on(vec![".pkr.hcl"]);
    tera.set_escape_fn(hcl_string);
    tera.add_raw_template(name, source)
        .map_err(template_error(name))?;
    Ok(tera)
}

fn shell_tera(name: &'static str, source: &str) -> Result<Tera, TemplateError> {
    let mut tera = Tera::default();
    tera.autoescape_on(vec![".sh"]);
    tera.set_escape_fn(shell_word);
    tera.add_raw_template(name, source)
        .map_err(template_error(name))?;
    Ok(tera)
}

fn shell_word(value: &str) -> String {
    support::shell::quote(value)
}

#[derive(Serialize)]
struct Tag<'a> {
    name: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct ManagedImageContext<'a> {
    name: &'a str,
    resource_group: &'a str,
}

/// What `packer/azure.pkr.hcl.tera` sees.
#[derive(Serialize)]
struct AzureContext<'a> {
    packer_plugins: bool,
    arch: &'static str,
    auth: &'static str,
    subscription_id: Option<&'a str>,
    base_image: &'a BaseImage,
    location: Option<&'a str>,
    build_resource_group_name: Option<&'a str>,
    vm_size: &'a str,
    managed_image: Option<ManagedImageContext<'a>>,
    gallery: Option<&'a GallerySpec>,
    regions: Option<&'a GalleryRegions>,
    tags: Vec<Tag<'a>>,
    input_hash_tag: &'static str,
    uploads: Vec<&'static str>,
    nomad_version: &'a str,
}

/// What `packer/local.pkr.hcl.tera` sees.
#[derive(Serialize)]
struct LocalContext<'a> {
    root: &'a str,
    nomad_version: &'a str,
}

/// What `packer/provision.sh.tera` sees.
#[derive(Serialize)]
struct ScriptContext<'a> {
    nomad_version: &'a str,
    arch: &'static str,
    release_url: &'a str,
    public_key: bool,
    consul_version: Option<&'a str>,
    cni_version: Option<&'a str>,
    cni_url: Option<&'a str>,
    cni_sha256: Option<&'a str>,
    packages: Vec<&'static str>,
    extra_commands: &'a [String],
}

/// What the Packer that runs the template can do, decided before rendering (see
/// [`crate::spec::for_packer`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ForPacker {
    /// Packer 1.7+: the azure template gets the `required_plugins` block (Packer 1.6 rejects it).
    pub plugins: bool,
    /// How the gallery destination names its regions, when there is one.
    pub gallery_regions: Option<GalleryRegions>,
}

impl ForPacker {
    /// Checks that this Packer can build what the settings ask for (arm64, gallery-only
    /// destinations and `target_region` need the azure plugin of Packer 1.7+) and decides how
    /// the template is written for it. A refusal names the spec field and the reason.
    pub fn decide(settings: &Settings, version: PackerVersion) -> Result<Self, SpecError> {
        match &settings.target {
            Target::Local { .. } => Ok(Self::default()),
            Target::Azure(azure) => {
                let plugins = version.needs_plugin_block();
                let gallery_regions =
                    crate::spec::for_packer(azure, settings.arch, plugins, &version.to_string())
                        .map_err(|problems| SpecError::Invalid {
                            path: settings.spec_path.clone(),
                            problems,
                        })?;
                Ok(Self {
                    plugins,
                    gallery_regions,
                })
            }
        }
    }
}

/// The files a build uploads from `files/`, in order.
pub fn uploads(settings: &Settings) -> Vec<&'static str> {
    let mut files = vec![INSTALL_NOMAD_FILE, RUN_NOMAD_FILE];
    if settings.public_key.is_some() {
        files.push(PUBLIC_KEY_FILE);
    }
    files
}

/// Renders the template for the settings' target and the provisioning script, for the Packer
/// `packer` describes; the local template uses only components every Packer bundles.
pub fn render(settings: &Settings, packer: &ForPacker) -> Result<Rendered, TemplateError> {
    let template = match &settings.target {
        Target::Azure(azure) => {
            let (location, build_resource_group_name) = match &azure.placement {
                Placement::Location(l) => (Some(l.as_str()), None),
                Placement::BuildResourceGroup(g) => (None, Some(g.as_str())),
            };
            let context = AzureContext {
                packer_plugins: packer.plugins,
                arch: settings.arch.as_str(),
                auth: azure.auth.as_str(),
                subscription_id: azure.subscription_id.as_deref(),
                base_image: &azure.base_image,
                location,
                build_resource_group_name,
                vm_size: &azure.vm_size,
                managed_image: azure.managed_image.as_ref().map(|m| ManagedImageContext {
                    name: &m.name,
                    resource_group: &m.resource_group,
                }),
                gallery: azure.gallery.as_ref(),
                regions: packer.gallery_regions.as_ref(),
                tags: azure
                    .tags
                    .iter()
                    .map(|(name, value)| Tag { name, value })
                    .collect(),
                input_hash_tag: INPUT_HASH_TAG,
                uploads: uploads(settings),
                nomad_version: &settings.nomad_version,
            };
            debug_assert!(matches!(
                azure.auth,
                AuthMode::AzureCli | AuthMode::ManagedIdentity | AuthMode::ClientSecret
            ));
            render_one(
                hcl_tera("azure.pkr.hcl", AZURE_SOURCE)?,
                "azure.pkr.hcl",
                &context,
            )?
        }
        Target::Local { root } => {
            let root = root.to_str().ok_or_else(|| TemplateError {
                source_name: "local.pkr.hcl",
                detail: format!("the local root {} is not valid UTF-8", root.display()),
            })?;
            let context = LocalContext {
                root,
                nomad_version: &settings.nomad_version,
            };
            render_one(
                hcl_tera("local.pkr.hcl", LOCAL_SOURCE)?,
                "local.pkr.hcl",
                &context,
            )?
        }
    };
    let script_context = ScriptContext {
        nomad_version: &settings.nomad_version,
        arch: settings.arch.as_str(),
        release_url: &settings.release_url,
        public_key: settings.public_key.is_some(),
        consul_version: settings.consul_version.as_deref(),
        cni_version: settings.cni_version.as_deref(),
        cni_url: settings.cni_url.as_deref(),
        cni_sha256: settings.cni_sha256.as_deref(),
        packages: settings.packages(),
        extra_commands: &settings.extra_commands,
    };
    let script = render_one(
        shell_tera("provision.sh", SCRIPT_SOURCE)?,
        "provision.sh",
        &script_context,
    )?;
    Ok(Rendered { template, script })
}

fn render_one(
    tera: Tera,
    name: &'static str,
    context: &impl Serialize,
) -> Result<String, TemplateError> {
    let context = Context::from_serialize(context).map_err(template_error(name))?;
    tera.render(name, &context).map_err(template_error(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl_string_escapes_quotes_backslashes_controls_and_template_sigils() {
        assert_eq!(hcl_string("plain-1.9.3"), "plain-1.9.3");
        assert_eq!(hcl_string(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(hcl_string("l1\nl2\r\t"), r"l1\nl2\r\t");
        assert_eq!(hcl_string("\u{1}\u{7f}"), r"\u0001\u007f");
        assert_eq!(hcl_string("${var.x} %{ if }"), "$${var.x} %%{ if }");
        // A lone sigil is literal in HCL and stays as it is.
        assert_eq!(hcl_string("100% $5 {x}"), "100% $5 {x}");
        assert_eq!(hcl_string("$${"), "$$${");
    }

    #[test]
    fn shell_words_are_quoted() {
        assert_eq!(shell_word("1.9.3"), "1.9.3");
        assert_eq!(shell_word("a b"), "'a b'");
    }
}
