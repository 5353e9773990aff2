from django import template

register = template.Library()


@register.filter
def get_item(mapping, key):
    """``{{ counts|get_item:"open" }}``: a dict lookup by a variable key."""
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.simple_tag
def sparkline(values, width: int = 160, height: int = 36):
    """A server-side SVG line chart of a series (None values are gaps), scaled to its own range; no JavaScript."""
    from django.utils.html import format_html
    from django.utils.safestring import mark_safe

    pts = [(i, float(v)) for i, v in enumerate(values or []) if v is not None]
    if not pts:
        return mark_safe('<svg class="spark" width="%d" height="%d" role="img" aria-label="no data"></svg>' % (width, height))
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    span = (hi - lo) or 1.0
    n = max(len(values) - 1, 1)
    xy = [(2 + i * (width - 4) / n, height - 3 - (v - lo) * (height - 6) / span) for i, v in pts]
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    dots = mark_safe("".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="currentColor"/>' for x, y in xy))
    last = pts[-1][1]
    return format_html('<svg class="spark" width="{}" height="{}" viewBox="0 0 {} {}" role="img" aria-label="last {}">'
                       '<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{}"/>{}</svg>',
                       width, height, width, height, f"{last:.3g}", coords, dots)
