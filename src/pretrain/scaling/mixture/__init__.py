"""Choosing a data mix by measurement (`pretrain mixture`): the library parts.

- `bounds`: the shares each source may take — a band around the recipe's weights, capped by how often the full
  run would repeat the source's tokens (`MixBounds`);
- `candidates`: the proxies' mixes, Dirichlet draws around the prior inside those bounds;
- `target`: the weighted set of per-source val bits/byte and benchmark bits/byte a mix is judged on;
- `regression`: the target's components fitted on the weights (a log-linear mixing law and LightGBM per
  component, each component's model picked by leave-one-out error), cross-validated rank correlation;
- `optimise`: the mix that minimises the predicted target inside the bounds;
- `proposal`: `mixture/proposal.json` and `mixture/report.md` (with its plots), written and read here.
"""
