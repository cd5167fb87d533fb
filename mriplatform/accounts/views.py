from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import reverse_lazy

from mriplatform.audit.services import record


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("accounts:home")

    def form_valid(self, form):
        response = super().form_valid(form)
        record(
            self.request.user, "auth.password_change", obj=self.request.user, request=self.request
        )
        messages.success(self.request, "Your password was changed.")
        return response


@login_required
def home(request):
    return render(request, "accounts/home.html")
