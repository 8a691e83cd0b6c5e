"""spacetime's attention inside diffusers' models: attention processors that compute through spacetime's operator.

:class:`SpacetimeAttnProcessor` runs a diffusers ``Attention`` through :func:`spacetime.ops.attention` (its masks, its
batch split above 65,535 = batch x heads), or through a spacetime pattern over the video grid of its tokens.
:class:`SpacetimeWanAttnProcessor` does the same for Wan's ``WanAttention`` (``WanTransformer3DModel``: rotary
self-attention, text cross-attention, I2V's image tokens), a pattern taking the place of Wan's joint
self-attention. :func:`set_spacetime_processor` installs either on the modules it serves. Both are importable from
:mod:`spacetime.interop.diffusers`; docs/interop-diffusers.md says what is supported.
"""

from __future__ import annotations

from collections.abc import Callable

from einops import rearrange
from torch import Tensor, nn

from ..checks import float_tensor, int_tuple, one_of, positive_int
from ..ops.attention import DEFAULT_BATCH_LIMIT, attention, available_backends
from ..ops.encodings import apply_rotary
from ..ops.layout import check_layout
from ..ops.patterns import Pattern

__all__ = ["TOKEN_ORDERS", "WAN_TEXT_TOKENS", "SpacetimeAttnProcessor", "SpacetimeWanAttnProcessor",
           "set_spacetime_processor"]

#: how an attention module's sequences lie on the ``(b, t, h, w)`` video: its ``(batch, sequence)`` axes
TOKEN_ORDERS = {"spatial": "(b t) heads (h w) d", "temporal": "(b h w) heads t d", "joint": "b heads (t h w) d"}
#: the text tokens at the end of an I2V cross-attention's context, as diffusers' ``WanAttnProcessor`` fixes them; the
#: tokens before them are the image's
WAN_TEXT_TOKENS = 512


def _check_pattern(pattern) -> Pattern | None:
    if pattern is not None and not isinstance(pattern, Pattern):
        raise TypeError(f"pattern must be a spacetime Pattern or None; got {type(pattern).__name__}")
    return pattern


class SpacetimeAttnProcessor:
    """A diffusers attention processor for ``Attention`` modules that computes through :func:`spacetime.ops.attention`.

    Args:
        backend: the spacetime backend; ``None`` follows the default. batch_limit: the largest ``batch * heads`` of one
            kernel call; above it the batch is split (exactly).
        pattern: ``None``: the module's attention as diffusers' ``AttnProcessor2_0`` computes it, masks included. A
            :class:`~spacetime.ops.Pattern` (``Window``, ``CrossFrame``, ...): the module's self-attention replaced by
            the pattern over the video grid of its tokens (no masks, no cross-attention).
        tokens: with a pattern, how the module's sequences lie on the video (:data:`TOKEN_ORDERS`): ``"spatial"``
            (each frame's pixels), ``"temporal"`` (each pixel's frames) or ``"joint"`` (the whole clip).
        latent: ``(b, t, h, w)`` of the model's latent; :meth:`watch` sets it on every forward. A call's frame size is
            the latent's halved (rounded up, as a U-Net downsamples) until it holds the call's tokens.
    """

    def __init__(self, *, backend: str | None = None, batch_limit: int = DEFAULT_BATCH_LIMIT,
                 pattern: Pattern | None = None, tokens: str | None = None, latent: tuple | None = None):
        self.backend = one_of("backend", backend, available_backends(), none_ok=True)
        self.batch_limit = positive_int("batch_limit", batch_limit)
        _check_pattern(pattern)
        if (pattern is None) != (tokens is None):
            raise ValueError(f"tokens must be given with a pattern, and only then; got pattern={pattern!r}, "
                             f"tokens={tokens!r}")
        self.pattern, self.tokens = pattern, one_of("tokens", tokens, TOKEN_ORDERS, none_ok=True)
        self.latent = None if latent is None else int_tuple("latent", latent, 4, axes="(b, t, h, w)")

    def watch(self, model: nn.Module, *, layout: str = "bcthw", argument: str = "sample"):
        """Read :attr:`latent` from ``model``'s input ``argument`` (``layout``) before each forward; returns the hook's
        handle (``.remove()`` stops it). The defaults read ``UNetMotionModel``'s ``sample``, ``(B, C, T, H, W)``."""
        check_layout(layout)

        def hook(_module, args, kwargs):
            x = kwargs[argument] if argument in kwargs else args[0] if args else None
            float_tensor(argument, x, 5, form=f"a video in layout {layout!r}")
            sizes = dict(zip(layout, x.shape))
            self.latent = (sizes["b"], sizes["t"], sizes["h"], sizes["w"])

        return model.register_forward_pre_hook(hook, with_kwargs=True)

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, temb: Tensor | None = None, *args, **kwargs) -> Tensor:
        _check_processable(attn)
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        image = hidden_states.shape[-2:] if hidden_states.ndim == 4 else None
        if image is not None:
            hidden_states = rearrange(hidden_states, "b c h w -> b (h w) c")
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)  # over (b, c, n)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if context.shape[0] != hidden_states.shape[0]:
            raise ValueError(f"encoder_hidden_states must have the batch of hidden_states ({hidden_states.shape[0]}); "
                             f"got {context.shape[0]}")
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        q, k, v = (rearrange(x, "b n (heads d) -> b heads n d", heads=attn.heads)
                   for x in (attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)))
        q, k = (q if attn.norm_q is None else attn.norm_q(q)), (k if attn.norm_k is None else attn.norm_k(k))
        if self.pattern is None:
            mask = attention_mask
            if mask is not None:  # as AttnProcessor2_0 prepares it: (b heads, n | 1, m) -> (b, heads, n | 1, m)
                mask = attn.prepare_attention_mask(mask, k.shape[2], q.shape[0])
                mask = mask.reshape(q.shape[0], attn.heads, -1, mask.shape[-1])
            out = attention(q, k, v, mask=mask, backend=self.backend, scale=attn.scale, batch_limit=self.batch_limit)
        else:
            out = self._pattern_attention(attn, q, k, v, attention_mask, encoder_hidden_states is not None)
        out = attn.to_out[1](attn.to_out[0](rearrange(out, "b heads n d -> b n (heads d)")))
        if image is not None:
            out = rearrange(out, "b (h w) c -> b c h w", h=image[0])
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def _pattern_attention(self, attn, q: Tensor, k: Tensor, v: Tensor, mask, cross: bool) -> Tensor:
        if cross or mask is not None:
            raise ValueError("pattern: a pattern swap replaces a self-attention without a mask; this call passes "
                             f"{'encoder_hidden_states' if cross else 'attention_mask'}: install the processor on "
                             "self-attention modules only (set_spacetime_processor(..., select=...))")
        if abs(attn.scale - q.shape[-1] ** -0.5) > 1e-12:
            raise ValueError(f"pattern: patterns scale scores by head_dim ** -0.5; this module uses {attn.scale}")
        b, t, h, w = self._grid(q.shape[0], q.shape[2])
        order = TOKEN_ORDERS[self.tokens]
        q, k, v = (rearrange(x, f"{order} -> b t h w heads d", b=b, t=t, h=h, w=w) for x in (q, k, v))
        return rearrange(self.pattern(q, k, v, backend=self.backend), f"b t h w heads d -> {order}")

    def _grid(self, batch: int, n: int) -> tuple[int, int, int, int]:
        """``(b, t, h, w)`` of a call's ``batch`` sequences of ``n`` tokens, from :attr:`latent`."""
        if self.latent is None:
            raise ValueError("latent: a pattern swap needs the latent's (b, t, h, w): pass latent= or watch(model)")
        lb, t, height, width = self.latent
        pixels = {"spatial": n, "temporal": batch // lb if batch % lb == 0 else 0, "joint": n // t}[self.tokens]
        h, w = height, width
        while h * w > pixels and h * w > 1:
            h, w = -(-h // 2), -(-w // 2)
        b = {"spatial": batch // t if batch % t == 0 else 0, "temporal": lb, "joint": batch}[self.tokens]
        if h * w != pixels or b * t * h * w != batch * n:
            raise ValueError(f"latent (b, t, h, w) = {self.latent} has no {self.tokens} grid of {batch} sequences x "
                             f"{n} tokens (frame sizes halved, rounded up)")
        return b, t, h, w


def _check_processable(attn) -> None:
    from diffusers.models.attention_processor import Attention

    if not isinstance(attn, Attention):
        hint = " (WanAttention: SpacetimeWanAttnProcessor)" if type(attn).__name__ == "WanAttention" else ""
        raise TypeError(f"SpacetimeAttnProcessor serves diffusers' Attention{hint}; got {type(attn).__name__}")
    options = {"added_kv_proj_dim": attn.added_kv_proj_dim is not None, "is_causal": attn.is_causal,
               "only_cross_attention": attn.to_k is None, "pre_only": attn.to_out is None,
               "kv_heads": attn.inner_kv_dim != attn.inner_dim}
    if bad := [name for name, used in options.items() if used]:
        raise ValueError(f"SpacetimeAttnProcessor: Attention option(s) {bad} are not supported (AttnProcessor2_0, "
                         "which it reproduces, does not serve them either)")


class SpacetimeWanAttnProcessor:
    """A diffusers processor for Wan's ``WanAttention`` that computes through :func:`spacetime.ops.attention`.

    ``WanTransformer3DModel.set_attn_processor(SpacetimeWanAttnProcessor())`` serves every attention of the model as
    diffusers' ``WanAttnProcessor`` does: self-attention with the model's rotary ``(cos, sin)`` on interleaved pairs,
    cross-attention to the text, and I2V's image tokens (``add_k_proj``: the context's tokens before the last
    :data:`WAN_TEXT_TOKENS`), fused projections too.

    Args:
        backend: the spacetime backend; ``None`` follows the default. batch_limit: the largest ``batch * heads`` of one
            kernel call; above it the batch is split (exactly).
        pattern: ``None``: Wan's attention. A :class:`~spacetime.ops.Pattern` (``Window``, ``CrossFrame``,
            ``Temporal``, ``Spatial``, ...): each self-attention call attends by the pattern over the token grid
            instead of jointly (rotary applied first, as Wan does); cross-attention is never swapped.
        grid: ``(t, h, w)`` of a self-attention call's tokens, in Wan's ``t h w`` order; :meth:`watch` sets it from the
            model's latent and patch size on every forward.

    diffusers' own attention backends (``set_attention_backend``) pass this processor by; context parallelism
    (``enable_parallelism``) is refused.
    """

    _parallel_config = None  # set by diffusers' enable_parallelism: refused in __call__

    def __init__(self, *, backend: str | None = None, batch_limit: int = DEFAULT_BATCH_LIMIT,
                 pattern: Pattern | None = None, grid: tuple | None = None):
        self.backend = one_of("backend", backend, available_backends(), none_ok=True)
        self.batch_limit = positive_int("batch_limit", batch_limit)
        self.pattern = _check_pattern(pattern)
        self.grid = None if grid is None else int_tuple("grid", grid, 3, axes="(t, h, w)")

    def watch(self, model: nn.Module):
        """Set :attr:`grid` before each forward of ``model`` (a ``WanTransformer3DModel``) from its ``hidden_states``
        ``(B, C, T, H, W)`` and ``config.patch_size``, as Wan patchifies (``T // p_t``, ...); returns the hook's handle
        (``.remove()`` stops it)."""
        patch = int_tuple("model.config.patch_size", getattr(getattr(model, "config", None), "patch_size", None), 3,
                          axes="(p_t, p_h, p_w)")

        def hook(_module, args, kwargs):
            x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0] if args else None
            float_tensor("hidden_states", x, 5, form="a (B, C, T, H, W) latent")
            self.grid = tuple(n // p for n, p in zip(x.shape[2:], patch))

        return model.register_forward_pre_hook(hook, with_kwargs=True)

    def __call__(self, attn, hidden_states: Tensor, encoder_hidden_states: Tensor | None = None,
                 attention_mask: Tensor | None = None, rotary_emb: tuple[Tensor, Tensor] | None = None,
                 **kwargs) -> Tensor:
        self._check_call(attn, kwargs)
        cross = encoder_hidden_states is not None
        image, context = _split_image_tokens(attn, encoder_hidden_states)
        q, k, v = (rearrange(x, "b n (heads d) -> b n heads d", heads=attn.heads)
                   for x in _wan_projections(attn, hidden_states, context, cross))
        if rotary_emb is not None:
            cos, sin = _wan_rotary(rotary_emb, q)
            q, k = apply_rotary(q, cos, sin, pairs="interleaved"), apply_rotary(k, cos, sin, pairs="interleaved")
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # (b, heads, n, d)
        if self.pattern is None or cross:
            out = attention(q, k, v, mask=attention_mask, backend=self.backend, batch_limit=self.batch_limit)
        else:
            out = self._pattern_attention(q, k, v, attention_mask)
        if image is not None:  # I2V: the image tokens answer the same queries, added
            k_img, v_img = _wan_image_projections(attn, image)
            out = out + attention(q, k_img, v_img, backend=self.backend, batch_limit=self.batch_limit)
        out = rearrange(out, "b heads n d -> b n (heads d)")
        return attn.to_out[1](attn.to_out[0](out))

    def _check_call(self, attn, kwargs: dict) -> None:
        from diffusers.models.transformers.transformer_wan import WanAttention

        if not isinstance(attn, WanAttention):
            raise TypeError(f"SpacetimeWanAttnProcessor serves diffusers' WanAttention; got {type(attn).__name__}")
        if self._parallel_config is not None:
            raise ValueError("_parallel_config: diffusers' context parallelism splits the attention across devices; "
                             "SpacetimeWanAttnProcessor computes whole sequences (spacetime.parallel shards clips)")
        if kwargs:
            raise TypeError(f"SpacetimeWanAttnProcessor: unexpected keyword argument(s) {sorted(kwargs)} (diffusers' "
                            "WanAttnProcessor takes none either)")

    def _pattern_attention(self, q: Tensor, k: Tensor, v: Tensor, mask) -> Tensor:
        if mask is not None:
            raise ValueError("attention_mask: a pattern swap replaces a self-attention without a mask; got a mask")
        if self.grid is None:
            raise ValueError("grid: a pattern swap needs the tokens' (t, h, w): pass grid= or watch(model)")
        t, h, w = self.grid
        if t * h * w != q.shape[2]:
            raise ValueError(f"grid (t, h, w) = {self.grid} holds {t * h * w} tokens; this self-attention has "
                             f"{q.shape[2]}")
        q, k, v = (rearrange(x, "b heads (t h w) d -> b t h w heads d", t=t, h=h) for x in (q, k, v))
        return rearrange(self.pattern(q, k, v, backend=self.backend), "b t h w heads d -> b heads (t h w) d")


def _split_image_tokens(attn, context: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """I2V: ``(image tokens, text tokens)`` of a cross-attention's context (``add_k_proj``); or ``(None, context)``."""
    if attn.add_k_proj is None:
        return None, context
    if context is None or context.ndim != 3 or context.shape[1] <= WAN_TEXT_TOKENS:
        got = "None" if context is None else tuple(context.shape)
        raise ValueError(f"encoder_hidden_states of an I2V cross-attention (add_k_proj) must be (b, image + "
                         f"{WAN_TEXT_TOKENS} text tokens, c) with at least one image token; got {got}")
    return context[:, :-WAN_TEXT_TOKENS], context[:, -WAN_TEXT_TOKENS:]


def _wan_projections(attn, x: Tensor, context: Tensor | None, cross: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Queries, keys and values ``(b, n | m, heads * d)``, queries and keys normed, from separate or fused weights."""
    context = x if context is None else context
    if getattr(attn, "fused_projections", False) and not attn.is_cross_attention:
        q, k, v = attn.to_qkv(x).chunk(3, dim=-1)  # fused self-attention reads x, as diffusers' does
    elif getattr(attn, "fused_projections", False):
        q, (k, v) = attn.to_q(x), attn.to_kv(context).chunk(2, dim=-1)
    else:
        q, k, v = attn.to_q(x), attn.to_k(context), attn.to_v(context)
    return attn.norm_q(q), attn.norm_k(k), v


def _wan_image_projections(attn, image: Tensor) -> tuple[Tensor, Tensor]:
    """I2V's image keys (normed) and values, ``(b, heads, m, d)``."""
    if getattr(attn, "fused_projections", False):
        k, v = attn.to_added_kv(image).chunk(2, dim=-1)
    else:
        k, v = attn.add_k_proj(image), attn.add_v_proj(image)
    k = attn.norm_added_k(k)
    return tuple(rearrange(x, "b m (heads d) -> b heads m d", heads=attn.heads) for x in (k, v))


def _wan_rotary(rotary_emb, q: Tensor) -> tuple[Tensor, Tensor]:
    """Wan's ``(cos, sin)``, each ``(1, n, 1, d)``, read as diffusers' rotation reads them: a pair turns by the cosine
    at its even channel and the sine at its odd one."""
    n, d = q.shape[1], q.shape[-1]
    pair = list(rotary_emb) if isinstance(rotary_emb, (tuple, list)) and len(rotary_emb) == 2 else []
    if not pair or not all(isinstance(x, Tensor) and x.ndim == 4 and x.shape[1] == n and x.shape[-1] == d
                           for x in pair):
        got = [tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__ for x in pair] or type(rotary_emb).__name__
        raise ValueError(f"rotary_emb must be (cos, sin), each (1, n, 1, d) = (1, {n}, 1, {d}); got {got}")
    cos, sin = pair
    return cos[..., 0::2].repeat_interleave(2, dim=-1), sin[..., 1::2].repeat_interleave(2, dim=-1)


def set_spacetime_processor(model: nn.Module, processor=None, *,
                            select: Callable[[str, nn.Module], bool] | None = None) -> list[str]:
    """Give ``processor`` (a default :class:`SpacetimeAttnProcessor` if ``None``) to every module of ``model`` it serves
    (diffusers' ``Attention``; ``WanAttention`` for a :class:`SpacetimeWanAttnProcessor`) for which
    ``select(name, module)`` is true (all by default), through the module's ``set_processor``; works for models without
    ``set_attn_processor`` (``TransformerSpatioTemporalModel``). Returns the modules' names."""
    from diffusers.models.attention_processor import Attention
    from diffusers.models.transformers.transformer_wan import WanAttention

    processor = SpacetimeAttnProcessor() if processor is None else processor
    kind = WanAttention if isinstance(processor, SpacetimeWanAttnProcessor) else Attention
    names = [n for n, m in model.named_modules() if isinstance(m, kind) and (select is None or select(n, m))]
    for name in names:
        model.get_submodule(name).set_processor(processor)
    if not names:
        raise ValueError(f"model: no diffusers {kind.__name__} module {'was selected' if select else 'found'} in "
                         f"{type(model).__name__}")
    return names
