"""``/_sim`` controls of the SAP ECC simulator over HTTP (no auth, no faults): the hooks of
:class:`~devstack.sims.ecc.sales.SalesBook` for tests and the dev stack that do not hold the
simulator object.

- ``POST /_sim/customers`` ``{"kunnr", "name", "sales_areas": ["1000/10/00"], "edsdc",
  "delivery_block", "credit_limit"}``: add a customer, or change the fields given of one.
- ``POST /_sim/orders/{vbeln}/delivery-block`` ``{"code": "01"}`` (``""`` lifts it),
  ``/billing-block`` likewise, ``/credit`` ``{"action": "block" | "release"}``,
  ``/incomplete`` ``{"incomplete": true | false}``.
- ``GET|POST /_sim/sales-rules`` (:class:`~devstack.sims.ecc.sales.SalesRules`),
  ``GET|POST /_sim/functions`` (the wrapper names), ``GET|POST /_sim/faults``.
- ``GET /_sim/orders/{vbeln}``: the order's VBAK/VBUK view (``holds`` as skuflow names them is
  the connector's business, not shown here).

Answers are JSON; a refused control is a 400 naming why, an unknown document a 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

if TYPE_CHECKING:
    from devstack.sims.ecc.server import EccSimulator

_Action = Callable[[Any], Any]


def add_routes(router: web.UrlDispatcher, sim: EccSimulator) -> None:
    sales = sim.sales

    def customer(body: Any) -> Any:
        fields = dict(body)
        kunnr = str(fields.pop("kunnr"))
        if kunnr in sales.customers:
            return _plain(sales.update_customer(kunnr, **fields))
        return _plain(sales.add_customer(kunnr, **fields))

    def rules(body: Any) -> Any:
        return msgspec.to_builtins(sales.set_rules(**body) if body else sales.rules)

    def functions(body: Any) -> Any:
        return msgspec.to_builtins(sim.functions.set_names(**body) if body else sim.functions.names)

    def faults(body: Any) -> Any:
        return msgspec.to_builtins(sim.set_faults(**body) if body else sim.faults)

    def hold(request: web.Request) -> _Action:
        vbeln, what = request.match_info["vbeln"], request.match_info["what"]

        def act(body: Any) -> Any:
            if what == "delivery-block":
                sales.set_delivery_block(vbeln, str(body.get("code", "01")))
            elif what == "billing-block":
                sales.set_billing_block(vbeln, str(body.get("code", "01")))
            elif what == "credit":
                action = body.get("action", "release")
                if action not in ("block", "release"):
                    raise ValueError('action is "block" or "release"')
                (sales.set_credit_block if action == "block" else sales.release_credit)(vbeln)
            else:
                sales.set_incomplete(vbeln, bool(body.get("incomplete", True)))
            return _order(sim, vbeln)

        return act

    router.add_post("/_sim/customers", _control(_always(customer)))
    for path, act in (("sales-rules", rules), ("functions", functions), ("faults", faults)):
        router.add_route("*", f"/_sim/{path}", _control(_always(act)))
    holds = "/_sim/orders/{vbeln}/{what:delivery-block|billing-block|credit|incomplete}"
    router.add_post(holds, _control(hold))
    router.add_get("/_sim/orders/{vbeln}", _control(lambda r: _always_order(sim, r)))


def _always(act: _Action) -> Callable[[web.Request], _Action]:
    return lambda _: act


def _always_order(sim: EccSimulator, request: web.Request) -> _Action:
    vbeln = request.match_info["vbeln"]
    return lambda _: _order(sim, vbeln)


def _control(
    action: Callable[[web.Request], _Action],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        body: Any = {}
        if request.method == "POST" and request.can_read_body:
            try:
                body = msgspec.json.decode(await request.read())
            except msgspec.DecodeError as exc:
                return web.json_response({"error": f"not JSON: {exc}"}, status=400)
        try:
            return web.json_response(action(request)(body))
        except KeyError as exc:
            return web.json_response({"error": f"not found: {exc}"}, status=404)
        except (TypeError, ValueError, AttributeError, msgspec.ValidationError) as exc:
            return web.json_response({"error": str(exc)}, status=400)

    return handle


def _order(sim: EccSimulator, vbeln: str) -> dict[str, Any]:
    order = sim.sales.order(vbeln)
    return {
        "VBELN": order.vbeln, "VBTYP": order.vbtyp, "KUNNR": order.kunnr,
        "BSTNK": order.bstnk, "LIFSK": order.lifsk, "FAKSK": order.faksk,
        **sim.sales.header_status(order),
        "items": [{"POSNR": f"{i.posnr:06d}", "MATNR": i.matnr, "KWMENG": str(i.kwmeng),
                   "ABGRU": i.abgru, **sim.sales.item_status(order, i)} for i in order.items],
    }  # fmt: skip


def _plain(record: Any) -> dict[str, Any]:
    fields = dict(vars(record))
    return {
        name: sorted("/".join(a) for a in value) if isinstance(value, set)
        else "/".join(value) if isinstance(value, tuple) else
        str(value) if value is not None and not isinstance(value, str) else value
        for name, value in fields.items()
    }  # fmt: skip
