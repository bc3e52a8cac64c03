//! Client pools: `[[client_pool]]` tables, each its own scale set (what instantiating the
//! Terraform module once per pool used to give), or one pool named `clients` from the single
//! `num_clients`/`client_instance_size` form. And the instance limits Azure puts on a scale set.
//!
//! Limits (Compute 2024-11-01 `singlePlacementGroup`: "When true this limits the scale set to a
//! single placement group, of max size 100 virtual machines"; "Working with large virtual
//! machine scale sets": up to 600 instances from a managed image, 1000 from a platform or
//! Compute Gallery image, only with `singlePlacementGroup: false`). `singlePlacementGroup` may go
//! from true to false on an existing scale set, never back.

use std::collections::BTreeMap;
use std::path::Path;

use super::checks::{
    check_meta_key, check_node_pool, check_nomad_name, check_scale_set_prefix, check_vm_size,
    is_lower_name,
};
use super::raw::RawClusterFile;
use super::{bad, ClientPool, ClusterFile, EvictionPolicy, Problem, Spot};

/// The pool the single form makes; its scale set is `<cluster>-clients`.
pub const DEFAULT_POOL: &str = "clients";

/// The single form's client count when `num_clients` is not given.
const DEFAULT_NUM_CLIENTS: u32 = 6;

/// A single placement group holds at most this many instances.
pub const SINGLE_PLACEMENT_GROUP_MAX: u32 = 100;

/// What the scale sets boot from, which decides how large one may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// `.../Microsoft.Compute/images/<name>`: at most 600 instances per scale set.
    Managed,
    /// `.../Microsoft.Compute/galleries/...`: at most 1000.
    Gallery,
}

impl ImageKind {
    pub fn of(image_id: &str) -> Self {
        if image_id
            .to_ascii_lowercase()
            .contains("/microsoft.compute/galleries/")
        {
            ImageKind::Gallery
        } else {
            ImageKind::Managed
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ImageKind::Managed => "a managed image",
            ImageKind::Gallery => "a Compute Gallery image",
        }
    }
}

/// The most instances one scale set may hold.
pub fn scale_set_limit(image: ImageKind, single_placement_group: bool) -> u32 {
    match (single_placement_group, image) {
        (true, _) => SINGLE_PLACEMENT_GROUP_MAX,
        (false, ImageKind::Managed) => 600,
        (false, ImageKind::Gallery) => 1000,
    }
}

pub(super) fn resolve_pools(base: &Path, raw: &RawClusterFile) -> Result<Vec<ClientPool>, Problem> {
    let nomad = &raw.nomad;
    if raw.client_pool.is_empty() {
        return Ok(vec![ClientPool {
            name: DEFAULT_POOL.to_string(),
            index: None,
            instance_size: raw
                .client_instance_size
                .clone()
                .unwrap_or_else(|| raw.instance_size.clone()),
            count: raw.num_clients.unwrap_or(DEFAULT_NUM_CLIENTS),
            node_class: nomad.node_class.clone(),
            node_pool: None,
            meta: nomad.meta.clone(),
            spot: None,
            computer_name_prefix: format!("{}-c", raw.computer_name_prefix),
            single_placement_group: None,
            custom_data: None,
        }]);
    }
    for (field, given) in [
        ("num_clients", raw.num_clients.is_some()),
        ("client_instance_size", raw.client_instance_size.is_some()),
    ] {
        if given {
            return Err(bad(
                field,
                "cannot be combined with [[client_pool]] tables: give each pool its own \
                 `count` and `instance_size`",
            ));
        }
    }
    let mut pools = Vec::new();
    for (i, p) in raw.client_pool.iter().enumerate() {
        let field = |key: &str| format!("client_pool[{i}].{key}");
        let spot = if p.spot {
            let eviction_policy = match p.eviction_policy.as_deref() {
                None => EvictionPolicy::Delete,
                Some(v) if v.eq_ignore_ascii_case("delete") => EvictionPolicy::Delete,
                Some(v) if v.eq_ignore_ascii_case("deallocate") => EvictionPolicy::Deallocate,
                Some(v) => {
                    return Err(bad(
                        &field("eviction_policy"),
                        format!("is {v:?}: use \"Delete\" or \"Deallocate\""),
                    ))
                }
            };
            Some(Spot {
                eviction_policy,
                max_price: p.max_price.unwrap_or(-1.0),
            })
        } else {
            for (key, given) in [
                ("eviction_policy", p.eviction_policy.is_some()),
                ("max_price", p.max_price.is_some()),
            ] {
                if given {
                    return Err(bad(
                        &field(key),
                        "applies to Spot pools only: add `spot = true`",
                    ));
                }
            }
            None
        };
        let mut meta: BTreeMap<String, String> = nomad.meta.clone();
        meta.extend(p.meta.clone());
        let custom_data = super::resolve::boot_commands(
            base,
            &[(&field("custom_data"), p.custom_data.as_deref())],
            (&field("custom_data_file"), p.custom_data_file.as_deref()),
        )?;
        pools.push(ClientPool {
            name: p.name.clone(),
            index: Some(i),
            instance_size: p
                .instance_size
                .clone()
                .unwrap_or_else(|| raw.instance_size.clone()),
            count: p.count,
            node_class: p.node_class.clone().or_else(|| nomad.node_class.clone()),
            node_pool: p.node_pool.clone(),
            meta,
            spot,
            computer_name_prefix: p
                .computer_name_prefix
                .clone()
                .unwrap_or_else(|| format!("{}-{}", raw.computer_name_prefix, p.name)),
            single_placement_group: p.single_placement_group,
            custom_data,
        });
    }
    Ok(pools)
}

/// Pool names become scale set names (`<cluster>-<pool>`, at most 64 characters with the
/// 40-character cluster name) and appear in `status`.
fn check_pool_name(field: &str, name: &str) -> Result<(), Problem> {
    if !is_lower_name(name, 1..=20) {
        return Err(bad(
            field,
            format!(
                "is {name:?}: use 1-20 lower-case letters, digits and '-', starting with a \
                 letter (it names the pool's scale set, <cluster>-<name>)"
            ),
        ));
    }
    if name == "servers" {
        return Err(bad(
            field,
            "is \"servers\", the name of the servers' scale set",
        ));
    }
    Ok(())
}

/// Whether a pool's scale set keeps a single placement group.
pub fn single_placement_group(pool: &ClientPool) -> bool {
    pool.single_placement_group
        .unwrap_or(pool.count <= SINGLE_PLACEMENT_GROUP_MAX)
}

pub(super) fn check_pools(f: &ClusterFile) -> Result<(), Problem> {
    let image = ImageKind::of(&f.image_id);
    let mut names: Vec<&str> = Vec::new();
    let servers_prefix = format!("{}-s", f.computer_name_prefix);
    let mut prefixes: Vec<(String, String)> =
        vec![(servers_prefix, "the servers' scale set".to_string())];
    for pool in &f.client_pools {
        if pool.index.is_some() {
            check_pool_name(&pool.field("name"), &pool.name)?;
        }
        if names.contains(&pool.name.as_str()) {
            return Err(bad(
                &pool.field("name"),
                format!("is {:?}, the name of another pool", pool.name),
            ));
        }
        names.push(&pool.name);
        check_vm_size(&pool.field("instance_size"), &pool.instance_size)?;
        if let Some(class) = &pool.node_class {
            check_nomad_name(&pool.field("node_class"), class)?;
        }
        if let Some(node_pool) = &pool.node_pool {
            check_node_pool(&pool.field("node_pool"), node_pool)?;
        }
        for key in pool.meta.keys() {
            let field = match pool.index {
                Some(_) => pool.field(&format!("meta.{key}")),
                None => format!("nomad.meta.{key}"),
            };
            check_meta_key(&field, key)?;
        }
        if let Some(spot) = &pool.spot {
            // -1: never evicted for price; otherwise a positive price in US dollars
            // (`BillingProfile.maxPrice`, Compute 2024-11-01).
            let price = spot.max_price;
            if !(price == -1.0 || (price.is_finite() && price > 0.0)) {
                return Err(bad(
                    &pool.field("max_price"),
                    format!(
                        "is {price}: give -1 (pay up to the regular price, evicted only for \
                         capacity) or a price above 0 in US dollars per hour"
                    ),
                ));
            }
        }
        let prefix_field = match pool.index {
            Some(_) => pool.field("computer_name_prefix"),
            None => "computer_name_prefix".to_string(),
        };
        check_scale_set_prefix(&prefix_field, &pool.computer_name_prefix)?;
        if let Some((_, owner)) = prefixes
            .iter()
            .find(|(p, _)| p == &pool.computer_name_prefix)
        {
            return Err(bad(
                &prefix_field,
                format!(
                    "is {:?}, the prefix of {owner}: every scale set needs its own, or host \
                     names (and Nomad node names) repeat",
                    pool.computer_name_prefix
                ),
            ));
        }
        prefixes.push((
            pool.computer_name_prefix.clone(),
            format!("pool {}", pool.name),
        ));
        let single = single_placement_group(pool);
        if pool.single_placement_group == Some(true) && pool.count > SINGLE_PLACEMENT_GROUP_MAX {
            return Err(bad(
                &pool.field("count"),
                format!(
                    "is {}, but `single_placement_group = true` holds at most \
                     {SINGLE_PLACEMENT_GROUP_MAX} instances",
                    pool.count
                ),
            ));
        }
        let limit = scale_set_limit(image, single);
        if pool.count > limit {
            return Err(bad(
                &pool.field("count"),
                format!(
                    "is {}: a scale set built from {} holds at most {limit} instances (Azure's \
                     limit: {} from a managed image, {} from a Compute Gallery image); split \
                     the clients into several [[client_pool]] tables",
                    pool.count,
                    image.describe(),
                    scale_set_limit(ImageKind::Managed, false),
                    scale_set_limit(ImageKind::Gallery, false),
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load_text, minimal_with, problem};
    use super::super::EvictionPolicy;
    use super::*;

    #[test]
    fn limits_follow_the_image_and_the_placement_groups() {
        assert_eq!(scale_set_limit(ImageKind::Managed, true), 100);
        assert_eq!(scale_set_limit(ImageKind::Managed, false), 600);
        assert_eq!(scale_set_limit(ImageKind::Gallery, false), 1000);
        assert_eq!(
            ImageKind::of("/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/galleries/x/images/y/versions/1.0.0"),
            ImageKind::Gallery
        );
        assert_eq!(
            ImageKind::of("/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/images/y"),
            ImageKind::Managed
        );
    }

    pub(crate) const POOLS: &str = "[[client_pool]]\nname = \"web\"\ncount = 4\ninstance_size = \"Standard_D4s_v5\"\nnode_class = \"web\"\n\
                         [[client_pool]]\nname = \"batch\"\ncount = 20\nspot = true\nmax_price = 0.02\nnode_pool = \"batch\"\n";

    #[test]
    fn client_pools_are_parsed_with_defaults_from_the_nomad_table() {
        let f = load_text(&minimal_with(&format!(
            "[nomad]\nnode_class = \"general\"\n[nomad.meta]\nrack = \"r1\"\n{POOLS}"
        )))
        .unwrap();
        assert_eq!(f.client_pools.len(), 2);
        assert_eq!(f.num_clients, 24);
        assert_eq!(f.instances(), 27);
        let web = &f.client_pools[0];
        assert_eq!((web.name.as_str(), web.count), ("web", 4));
        assert_eq!(web.node_class.as_deref(), Some("web"));
        assert_eq!(web.meta.get("rack").map(String::as_str), Some("r1"));
        assert_eq!(web.computer_name_prefix, "nomad-web");
        let batch = &f.client_pools[1];
        assert_eq!(batch.node_class.as_deref(), Some("general"));
        assert_eq!(batch.instance_size, "Standard_D2s_v5");
        let spot = batch.spot.unwrap();
        assert_eq!(spot.eviction_policy, EvictionPolicy::Delete);
        assert_eq!(spot.max_price, 0.02);
        // Without tables: one pool named clients from the single form.
        let f = load_text(&minimal_with(
            "num_clients = 2\nclient_instance_size = \"Standard_D8s_v5\"",
        ))
        .unwrap();
        assert_eq!(f.client_pools.len(), 1);
        assert_eq!(f.client_pools[0].name, "clients");
        assert_eq!(f.client_pools[0].instance_size, "Standard_D8s_v5");
        assert_eq!(f.client_pools[0].computer_name_prefix, "nomad-c");
    }

    #[test]
    fn bad_pools_are_refused_by_field() {
        for (extra, field) in [
            (format!("num_clients = 3\n{POOLS}"), "num_clients"),
            ("[[client_pool]]\nname = \"Web\"\ncount = 1\n".to_string(), "client_pool[0].name"),
            ("[[client_pool]]\nname = \"servers\"\ncount = 1\n".to_string(), "client_pool[0].name"),
            (
                "[[client_pool]]\nname = \"a\"\ncount = 1\n[[client_pool]]\nname = \"a\"\ncount = 1\n".to_string(),
                "client_pool[1].name",
            ),
            ("[[client_pool]]\nname = \"a\"\ncount = 1\nnode_pool = \"all\"\n".to_string(), "client_pool[0].node_pool"),
            ("[[client_pool]]\nname = \"a\"\ncount = 1\nmax_price = 0.1\n".to_string(), "client_pool[0].max_price"),
            ("[[client_pool]]\nname = \"a\"\ncount = 1\nspot = true\nmax_price = 0\n".to_string(), "client_pool[0].max_price"),
            ("[[client_pool]]\nname = \"a\"\ncount = 1\nspot = true\neviction_policy = \"Stop\"\n".to_string(), "client_pool[0].eviction_policy"),
            ("[[client_pool]]\nname = \"a\"\ncount = 1\ninstance_size = \"m5.large\"\n".to_string(), "client_pool[0].instance_size"),
            ("[[client_pool]]\nname = \"a\"\ncount = 1\ncomputer_name_prefix = \"nomad-s\"\n".to_string(), "client_pool[0].computer_name_prefix"),
            ("[[client_pool]]\nname = \"averylongpoolname\"\ncount = 1\n".to_string(), "client_pool[0].computer_name_prefix"),
            ("[[client_pool]]\nname = \"a\"\ncount = 1\n[client_pool.meta]\n\"a..b\" = \"x\"\n".to_string(), "client_pool[0].meta.a..b"),
        ] {
            let text = problem(&minimal_with(&extra));
            assert!(text.contains(&format!("`{field}`")), "{extra}\n{text}");
        }
    }

    #[test]
    fn pool_sizes_stop_at_azure_limits() {
        let big_subnet = "subnet_address = \"10.0.0.0/20\"\n";
        // Above 100: allowed, in several placement groups.
        assert!(load_text(&minimal_with(&format!("{big_subnet}num_clients = 101"))).is_ok());
        let text = problem(&minimal_with(&format!("{big_subnet}num_clients = 601")));
        assert!(text.contains("`num_clients` is 601"), "{text}");
        assert!(text.contains("at most 600 instances"), "{text}");
        assert!(text.contains("managed image"), "{text}");
        let gallery = "image_id = \"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/galleries/gal/images/nomad/versions/1.0.0\"\n";
        assert!(load_text(&minimal_with(&format!(
            "{gallery}{big_subnet}num_clients = 1000"
        )))
        .is_ok());
        let text = problem(&minimal_with(&format!(
            "{gallery}{big_subnet}num_clients = 1001"
        )));
        assert!(text.contains("at most 1000 instances"), "{text}");
        let text = problem(&minimal_with(&format!(
            "{big_subnet}[[client_pool]]\nname = \"a\"\ncount = 150\nsingle_placement_group = true\n"
        )));
        assert!(text.contains("`client_pool[0].count` is 150"), "{text}");
        // The subnet holds every instance of every pool.
        let text = problem(&minimal_with(
            "[[client_pool]]\nname = \"a\"\ncount = 200\n[[client_pool]]\nname = \"b\"\ncount = 60\n",
        ));
        assert!(text.contains("`subnet_address`"), "{text}");
        assert!(text.contains("263 instances"), "{text}");
    }
}
