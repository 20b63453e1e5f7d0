from __future__ import annotations

from django.urls import path

from healthcare import api

app_name = "healthcare"

urlpatterns = [
    path("receipts", api.ReceiptListApi.as_view(), name="receipts"),
    # Before receipts/<reference>: these two are not references.
    path("receipts/export", api.ReceiptExportApi.as_view(), name="receipts-export"),
    path("receipts/verify", api.ReceiptDocumentVerifyApi.as_view(), name="receipts-verify"),
    path("receipts/<str:reference>", api.ReceiptDetailApi.as_view(), name="receipt-detail"),
    path("receipts/<str:reference>/verify", api.ReceiptVerifyApi.as_view(), name="receipt-verify"),
]
