"""``/limits``: the org's limits the way Salesforce lists them (``{"Max", "Remaining"}``
per limit name). Only ``DailyApiRequests`` moves (the mock counts API calls); the rest are
an Enterprise Edition org's allocations, untouched."""

from __future__ import annotations

from typing import Any

__all__ = ["STATIC_LIMITS", "limits_body"]

STATIC_LIMITS: dict[str, int] = {
    "ActiveScratchOrgs": 0,
    "AnalyticsExternalDataSizeMB": 40960,
    "ConcurrentAsyncGetReportInstances": 200,
    "ConcurrentEinsteinDataInsightsStoryCreation": 5,
    "ConcurrentEinsteinDiscoveryStoryCreation": 2,
    "ConcurrentSyncReportRuns": 20,
    "DailyAnalyticsDataflowJobExecutions": 60,
    "DailyAnalyticsUploadedFilesSizeMB": 51200,
    "DailyAsyncApexExecutions": 250000,
    "DailyAsyncApexTests": 500,
    "DailyBulkApiBatches": 15000,
    "DailyBulkV2QueryFileStorageMB": 976562,
    "DailyBulkV2QueryJobs": 10000,
    "DailyDeliveredPlatformEvents": 10000,
    "DailyDurableGenericStreamingApiEvents": 10000,
    "DailyDurableStreamingApiEvents": 10000,
    "DailyEinsteinDataInsightsStoryCreation": 1000,
    "DailyEinsteinDiscoveryPredictAPICalls": 50000,
    "DailyEinsteinDiscoveryPredictionsByCDC": 500000,
    "DailyEinsteinDiscoveryStoryCreation": 100,
    "DailyFunctionsApiCallLimit": 235000,
    "DailyGenericStreamingApiEvents": 10000,
    "DailyScratchOrgs": 0,
    "DailyStandardVolumePlatformEvents": 10000,
    "DailyStreamingApiEvents": 10000,
    "DailyWorkflowEmails": 1890,
    "DataStorageMB": 5,
    "DurableStreamingApiConcurrentClients": 20,
    "FileStorageMB": 20,
    "HourlyAsyncReportRuns": 1200,
    "HourlyDashboardRefreshes": 200,
    "HourlyDashboardResults": 5000,
    "HourlyDashboardStatuses": 999999999,
    "HourlyLongTermIdMapping": 100000,
    "HourlyManagedContentPublicRequests": 50000,
    "HourlyODataCallout": 20000,
    "HourlyPublishedPlatformEvents": 50000,
    "HourlyPublishedStandardVolumePlatformEvents": 1000,
    "HourlyShortTermIdMapping": 100000,
    "HourlySyncReportRuns": 500,
    "HourlyTimeBasedWorkflow": 50,
    "MassEmail": 10,
    "MonthlyPlatformEventsUsageEntitlement": 0,
    "Package2VersionCreates": 0,
    "Package2VersionCreatesWithoutValidation": 0,
    "PermissionTypes": 30000,
    "PrivateConnectOutboundCalloutHourlyLimitMB": 0,
    "SingleEmail": 15,
    "StreamingApiConcurrentClients": 20,
}


def limits_body(api_used: int, api_max: int) -> dict[str, Any]:
    """The ``/limits`` answer, names sorted as Salesforce sends them."""
    body: dict[str, Any] = {name: {"Max": n, "Remaining": n} for name, n in STATIC_LIMITS.items()}
    body["DailyApiRequests"] = {"Max": api_max, "Remaining": max(0, api_max - api_used)}
    return dict(sorted(body.items()))
