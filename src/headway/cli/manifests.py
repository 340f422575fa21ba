"""`headway render kubernetes`: the manifests a cluster needs for the app as headway.yml describes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from headway.cli.main import env_option

from headway.cli.render import err_console, escape


@click.group()
def render() -> None:
    """Write what another platform needs to run the app (nothing is deployed, no secret value is read)."""


@render.command("kubernetes")
@env_option
@click.option("--version", "version", default=None,
              help="Tag of the built images (default: the short commit id of HEAD).")
@click.option("--image-tag", default=None, metavar="TAG",
              help="The images CI pushed with this tag (built images from their `name` repository).")
@click.option("-o", "--output", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Write one file per kind into DIR (NN-kind.yaml, in apply order) instead of stdout.")
@click.option("--namespace", default=None, metavar="NAME", help="Namespace of every object (default APP-ENV).")
@click.option("--no-namespace", "no_namespace", is_flag=True,
              help="Do not render the Namespace object (it exists already).")
@click.option("--ingress-class", default=None, metavar="NAME", help="spec.ingressClassName of the Ingresses.")
@click.option("--cluster-issuer", default=None, metavar="NAME",
              help="cert-manager ClusterIssuer for ACME `tls:` (default letsencrypt, or letsencrypt-staging).")
@click.pass_obj
def kubernetes(obj: Any, environment: str, version: str | None, image_tag: str | None, output: str | None,
               namespace: str | None, no_namespace: bool, ingress_class: str | None,
               cluster_issuer: str | None) -> None:
    """Deployments, Services, Ingress, PodDisruptionBudgets and the release Job for ENV, as YAML."""
    import sys

    from headway.config.loader import find_config, load_config
    from headway.render.kubernetes import Options, render_kubernetes, write_files

    path = find_config(explicit=getattr(obj, "config", None))
    options = Options(version=version, image_tag=image_tag, namespace=namespace, namespace_object=not no_namespace,
                      ingress_class=ingress_class, cluster_issuer=cluster_issuer)
    rendered = render_kubernetes(load_config(path), environment, path.parent, options)
    if output is None:
        sys.stdout.write(rendered.yaml())
        sys.stdout.flush()
    else:
        written = write_files(rendered, Path(output))
        err_console.print(f"[green]wrote[/green] {len(written)} files to {escape(output)}: "
                          f"{escape(', '.join(p.name for p in written))}")
        for step in rendered.steps:
            err_console.print(f"  {escape(step.replace('FILE', output))}")
    for note in rendered.notes:
        err_console.print(f"[yellow]note:[/yellow] {escape(note)}")
