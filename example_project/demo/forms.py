"""Input of the demo client: the same fields (camelCase, as in the API) from the HTML forms and
from the JSON client endpoint."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.core.validators import RegexValidator

from demo.flows import CHECKOUT_MAX_WAIT

_identifier = RegexValidator(
    r"^[A-Za-z0-9_.:-]+$", "Use letters, digits and _ . : - only (e.g. doc_456)."
)


class ConvertVideoForm(forms.Form):
    videoId = forms.CharField(
        label="videoId", max_length=100, validators=[_identifier], initial="abc123"
    )


class StartReviewForm(forms.Form):
    documentId = forms.CharField(
        label="documentId", max_length=100, validators=[_identifier], initial="doc_456"
    )


class StartCheckoutForm(forms.Form):
    orderId = forms.CharField(
        label="orderId", max_length=100, validators=[_identifier], initial="order_789"
    )
    amount = forms.DecimalField(
        max_digits=10, decimal_places=2, min_value=Decimal("0.01"), initial="99.99"
    )
    maxWaitTime = forms.IntegerField(
        label="maxWaitTime",
        required=False,
        min_value=1,
        max_value=30 * 86400,
        initial=CHECKOUT_MAX_WAIT,
        help_text="Seconds to complete the payment before the task times out (default 3600).",
    )

    def clean_maxWaitTime(self) -> int:  # Django's clean_<field> hook, hence the name
        value = self.cleaned_data.get("maxWaitTime")
        return CHECKOUT_MAX_WAIT if value is None else int(value)


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
